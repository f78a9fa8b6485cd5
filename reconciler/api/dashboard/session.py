"""The dashboard's sign-in: the session cookie, CSRF tokens and the same-origin check.

A browser signs in with an API key (``/?key=SECRET`` or the sign-in form); the key is kept in
an HttpOnly, SameSite=Strict cookie that only the dashboard's routes read (``/api/*`` takes
keys from the ``X-API-Key`` header or ``?key=`` only, so the JSON API cannot be driven by a
cookie). The key is looked up on every request, so revoking it signs every browser out.

Every form carries a CSRF token, an HMAC-SHA256 of the session under a fixed label, keyed by
the session's secret: only someone who holds the cookie can compute it, and it reveals
nothing of the key. POSTs must carry it (compared with :func:`hmac.compare_digest`) and come
from the dashboard's own origin (``Origin``, else ``Referer``). Pure apart from reading the
request it is given; called by :mod:`reconciler.api.dashboard.routes`.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

COOKIE = "reconciler_session"
_CSRF_LABEL = b"reconciler dashboard csrf v1"


def session_secret(request: Request) -> str | None:
    """The key the browser signed in with (None: not signed in)."""
    value = request.cookies.get(COOKIE)
    return value or None


def csrf_token(secret: str) -> str:
    """The CSRF token of the session of ``secret``."""
    return hmac.new(secret.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_ok(secret: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(secret), str(presented))


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_origin(request: Request) -> str:
    host = request.headers.get("host") or request.url.netloc
    return f"{request.url.scheme}://{host}".lower()


def same_origin(request: Request) -> bool:
    """A POST came from a page of this dashboard: its ``Origin`` (or, when a browser sent
    none, its ``Referer``) is this server's origin. Neither header: a non-browser client,
    which the CSRF token alone must then satisfy."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != "null" and _origin_of(origin) == own_origin(request)
    referer = request.headers.get("referer")
    if referer is not None:
        return _origin_of(referer) == own_origin(request)
    return True


def set_session(response: Response, request: Request, secret: str) -> None:
    response.set_cookie(
        COOKIE,
        secret,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
    )


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def local_path(target: str | None) -> str:
    """``target`` if it is a path on this server (``/runs/5``), else ``/``: a sign-in never
    redirects elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target
