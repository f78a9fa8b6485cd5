"""Bodies the API must refuse with a clear answer, never a 500: over the size limit (by
``Content-Length``, before the body is read, or while a chunked body streams), truncated JSON,
not JSON at all. Raw sockets, so the test controls every byte that is sent."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlparse

from reconciler.api.context import DEFAULT_BODY_LIMIT

from .conftest import Api


def _connect(api: Api) -> socket.socket:
    u = urlparse(api.url)
    s = socket.create_connection((u.hostname, u.port), timeout=10)
    return s


def _head(api: Api, extra: str) -> bytes:
    return (
        "POST /api/jobs/trigger?template=ping HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nX-API-Key: {api.keys['ci']}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def _answer(s: socket.socket) -> tuple[int, dict[str, object]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, json.loads(rest[:length])


def test_a_content_length_over_the_limit_is_413_before_the_body_is_sent(api: Api) -> None:
    with _connect(api) as s:
        s.sendall(_head(api, f"Content-Length: {DEFAULT_BODY_LIMIT + 1}\r\n"))
        start = time.monotonic()
        status, body = _answer(s)  # no byte of the body was sent: it was not waited for
    assert status == 413 and body["error"]["code"] == "too-large"
    assert time.monotonic() - start < 5


def test_a_chunked_body_is_stopped_with_413_once_it_grows_past_the_limit(api: Api) -> None:
    chunk = b"x" * (512 * 1024)
    with _connect(api) as s:
        s.sendall(_head(api, "Transfer-Encoding: chunked\r\n"))
        sent = 0
        cut_off = False  # the server answered and closed before the rest was sent
        try:
            while sent <= DEFAULT_BODY_LIMIT + len(chunk) * 2:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            cut_off = True
        status, body = _answer(s)
    assert cut_off or sent > DEFAULT_BODY_LIMIT
    assert status == 413 and body["error"]["code"] == "too-large"
    assert api.call("/healthz", key=None).status == 200


def test_truncated_and_non_json_bodies_are_400_not_500(api: Api) -> None:
    for data, ctype in (
        (b'{"variables": {"greeting": "hi"', "application/json"),
        (b"greeting=hi", "application/json"),
        (b"\xff\xfe\x00", "application/json"),
        (b"greeting=hi", "application/x-www-form-urlencoded"),
        (b'{"variables": {}}', "text/plain"),
        (b"[1, 2, 3]", "application/json"),
    ):
        got = api.trigger("template=ping", data=data, headers={"Content-Type": ctype})
        assert got.status in (400, 415), (data, ctype, got.status, got.body)
        assert set(got.body["error"]) == {"code", "message"}
    got = api.trigger("template=ping", data=b"{}", headers={"Content-Type": "application/json"})
    assert got.status == 202


def test_a_body_cut_short_by_the_client_leaves_the_server_serving(api: Api) -> None:
    with _connect(api) as s:
        s.sendall(_head(api, "Content-Length: 100\r\n") + b'{"variables": {')
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        try:
            data = s.recv(65536)
        except (TimeoutError, ConnectionResetError):
            data = b""
    assert not data.startswith(b"HTTP/1.1 5"), data[:200]
    assert api.call("/healthz", key=None).status == 200
