"""Helpers of the notification suite: a real HTTP receiver and a real SMTP server (aiosmtpd,
STARTTLS with a certificate made here, AUTH) on 127.0.0.1, and a small desired state with
channels, applied to a real store."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from reconciler.clock import ManualClock
from reconciler.engine.notifying import Sender
from reconciler.stores import StateStore
from tests.daemon.conftest import apply_dir, schedule, write_repo

SECRET = "s3cret-hook-key"
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    valid: bool

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """An HTTP server that records every POST, checks its signature with ``secret`` (as a
    user's receiver would: HMAC-SHA256 of the exact body, compare_digest) and answers the
    statuses of ``plan`` in turn (then 200)."""

    secret: str = SECRET
    plan: list[int] = field(default_factory=list)
    delay: float = 0.0
    got: list[Delivery] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        sig = headers.get("x-reconciler-signature-256", "")
        with self._lock:
            self.got.append(Delivery(path, headers, body, hmac.compare_digest(expected, sig)))
            return self.plan.pop(0) if self.plan else 200

    def delivery_ids(self) -> list[str]:
        with self._lock:
            return [d.headers["x-reconciler-delivery"] for d in self.got]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = rec.handle(self.path, headers, body)
            if rec.delay:
                rec.release.wait(rec.delay)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield rec
    rec.release.set()
    server.shutdown()
    server.server_close()
    t.join(5)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "smtp-cert.pem", tmp / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Mailbox:
    host: str
    port: int
    client_tls: ssl.SSLContext
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    tls_seen: list[bool] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    """aiosmtpd on 127.0.0.1 requiring STARTTLS before AUTH (user ``mailer``, password
    ``mail-pw``) and before any mail."""
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    box = Mailbox("127.0.0.1", _free_port(), client_tls)

    class Handler:
        async def handle_DATA(
            self, server: SmtpServer, session: Session, envelope: Envelope
        ) -> str:
            box.tls_seen.append(session.ssl is not None)
            box.messages.append(
                (str(envelope.mail_from), list(envelope.rcpt_tos), bytes(envelope.content or b""))
            )
            return "250 OK"

    def authenticator(
        server: SmtpServer, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            user, pw = data.login.decode(), data.password.decode()
            box.logins.append((user, pw))
            return AuthResult(success=user == "mailer" and pw == "mail-pw")
        return AuthResult(success=False)

    controller = Controller(
        Handler(),
        hostname=box.host,
        port=box.port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
        ready_timeout=10,
    )
    controller.start()
    yield box
    controller.stop()


CHANNELS = """
apiVersion: reconciler/v1
kind: Channel
metadata: {name: hook}
spec:
  webhook:
    url: URL
    secretFrom: {env: RC_TEST_HOOK_SECRET}
    headers: {X-Team: web}
---
apiVersion: reconciler/v1
kind: Channel
metadata: {name: plain}
spec:
  webhook:
    url: URL
---
apiVersion: reconciler/v1
kind: Channel
metadata: {name: mail}
spec:
  email:
    to: [ops@example.com]
    from: reconciler@example.com
    smtp:
      host: 127.0.0.1
      port: PORT
      starttls: true
      userFrom: {env: RC_TEST_SMTP_USER}
      passwordFrom: {file: PWFILE}
"""

TEMPLATES = """
apiVersion: reconciler/v1
kind: JobTemplate
metadata: {name: ping}
spec:
  type: orchestration
  playbook: playbooks/ping.yml
  variables:
    - {name: greeting, type: string, default: hello}
    - {name: token, type: string, sensitive: true, required: false}
  notify:
    - {channel: hook, on: [success, failure, missed, disabled, stalled, approval]}
---
apiVersion: reconciler/v1
kind: JobTemplate
metadata: {name: conf}
spec:
  type: configuration
  playbook: playbooks/ping.yml
  notify:
    - {channel: hook, on: [drift]}
---
apiVersion: reconciler/v1
kind: JobTemplate
metadata: {name: gated}
spec:
  type: orchestration
  playbook: playbooks/ping.yml
  approval: {required: true, approvers: [group:sre], count: 1}
  notify:
    - {channel: hook, on: [approval]}
"""


def notify_repo(
    root: Path,
    receiver_url: str,
    schedules: dict[str, str],
    *,
    smtp_port: int = 2525,
) -> Path:
    """The daemon suite's base documents with channels and notifying templates."""
    pw = root.parent / "smtp-password"
    pw.write_text("mail-pw\n")
    channels = (
        CHANNELS.replace("URL", receiver_url)
        .replace("PORT", str(smtp_port))
        .replace("PWFILE", str(pw))
    )
    return write_repo(root, schedules, {"channels.yaml": channels, "templates.yaml": TEMPLATES})


@pytest.fixture
def hook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RC_TEST_HOOK_SECRET", SECRET)
    monkeypatch.setenv("RC_TEST_SMTP_USER", "mailer")


def applied(store: StateStore, root: Path, now: dt.datetime = NOW) -> None:
    apply_dir(store, root, now)


def fast_sender(store: StateStore, clock: ManualClock, **kw: Any) -> Sender:
    """A sender whose back-off is milliseconds, driven by a manual clock."""
    kw.setdefault("backoff_first", 0.001)
    kw.setdefault("backoff_max", 0.001)
    kw.setdefault("timeout", 5.0)
    return Sender(store, clock, "test-sender", **kw)


__all__ = ["NOW", "SECRET", "applied", "fast_sender", "notify_repo", "schedule"]
