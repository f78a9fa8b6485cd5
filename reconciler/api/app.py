"""The HTTP application served by ``reconciler serve`` (FastAPI on uvicorn, in-process).

:func:`create_app` assembles the routers of :mod:`reconciler.api.routes` (one module per
resource) over one :class:`~reconciler.api.context.ApiContext`. Every error answer is
``{"error": {"code", "message"}}`` (:mod:`reconciler.api.errors`). Requests are logged by
:func:`create_app`'s middleware without their query strings (uvicorn's access log is off: it
would print ``?key=`` secrets).
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler.api.context import ApiContext
from reconciler.api.errors import install_handlers
from reconciler.api.routes import approvals, calendar, health, metrics, webhooks

log = logging.getLogger("reconciler.http")

ROUTERS = (
    health.routes,
    metrics.routes,
    calendar.routes,
    approvals.routes,
    webhooks.routes,
)


class RequestLog:
    """One log line per request: method, path (never the query string: it may hold ``?key=``),
    status and time. Plain ASGI: Starlette's ``BaseHTTPMiddleware`` re-streams every request
    body through a task group, which costs milliseconds on a 30 KB webhook delivery."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            log.info(
                "%s %s %d %.1f ms",
                scope["method"],
                scope["path"],
                status[0],
                (time.perf_counter() - start) * 1000,
            )


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="reconciler",
        description="GitOps reconciler for scheduled infrastructure jobs",
        version="0.1.0",
    )
    install_handlers(app)

    app.add_middleware(RequestLog)

    for make in ROUTERS:
        app.include_router(make(ctx))
    return app
