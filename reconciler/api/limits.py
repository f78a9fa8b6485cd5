"""The request-body limit and the request log: two plain ASGI middlewares around the app.

:class:`BodyLimit` answers 413 (the contract's error object) before reading a body whose
``Content-Length`` is over the limit, and stops a body sent without one (chunked) as soon as
it grows past the limit: reading it raises :class:`BodyTooLarge`, a Starlette HTTP 413 that
FastAPI's body parsing lets through to the error handlers (and that the middleware answers
itself if nothing else did). :class:`RequestLog` logs one line per request: method, path,
status, duration; never the query string, which may hold ``?key=``.

Used by :func:`reconciler.api.app.create_app`. No I/O of its own but the ASGI messages.
"""

from __future__ import annotations

import json
import logging
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the limit of {limit} bytes")


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    """Answer with the contract's error object; the connection is closed after it (a body
    that was not read may still be on its way)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """At most ``limit`` bytes of request body (``ApiContext.body_limit``)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await send_error(send, 400, "bad-request", "Content-Length is not a number")
                    return
                if length > limit:
                    await send_error(send, 413, "too-large", BodyTooLarge(limit).detail)
                    return
        total = 0
        started = False

        async def limited() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except BodyTooLarge as e:
            if started:
                raise
            await send_error(send, 413, "too-large", e.detail)


class RequestLog:
    """One log line per HTTP request, without its query string."""

    def __init__(self, app: ASGIApp, log: logging.Logger) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            if self.log.isEnabledFor(logging.INFO):
                self.log.info(
                    "%s %s %d %.1f ms",
                    scope["method"],
                    scope["path"],  # never the query string: it may hold ?key=
                    status,
                    (time.perf_counter() - start) * 1000,
                )
