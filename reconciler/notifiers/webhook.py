"""Webhook delivery: one JSON POST with ``http.client`` (no redirects followed: a 3xx is a
failed attempt). I/O. Who calls it: :mod:`reconciler.engine.notifying`'s sender.

The caller passes the exact body and its headers (signature included, made by
:mod:`reconciler.notifiers.messages`); an answer in 200-299 is a delivery, anything else (an
error status, a timeout, a refused connection) raises :class:`~reconciler.notifiers.
DeliveryError` with one line that names the URL's host, never a header value.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from reconciler.notifiers import DeliveryError

DEFAULT_TIMEOUT = 10.0


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    context: ssl.SSLContext | None = None,
) -> int:
    """POST ``body`` to ``url``; the status code when it is 2xx, else DeliveryError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError(
            f"not an http(s) URL: {parts.scheme}://{parts.hostname}", permanent=True
        )
    where = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname,
            parts.port,
            timeout=timeout,
            context=context or ssl.create_default_context(),
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    all_headers = {
        "Content-Type": "application/json",
        "User-Agent": "reconciler",
        **headers,
        "Content-Length": str(len(body)),
    }
    try:
        conn.request("POST", path, body=body, headers=all_headers)
        resp = conn.getresponse()
        resp.read(64 * 1024)
        status = resp.status
    except TimeoutError:
        raise DeliveryError(f"{where} did not answer within {timeout:.0f} s") from None
    except (OSError, http.client.HTTPException) as e:
        raise DeliveryError(f"cannot POST to {where}: {type(e).__name__}: {e}") from None
    finally:
        conn.close()
    if not 200 <= status < 300:
        raise DeliveryError(f"{where} answered HTTP {status}")
    return status
