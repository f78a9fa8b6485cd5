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
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response

from reconciler.api import dashboard
from reconciler.api.context import ApiContext
from reconciler.api.errors import install_handlers
from reconciler.api.routes import approvals, calendar, health

log = logging.getLogger("reconciler.http")

ROUTERS = (health.routes, calendar.routes, approvals.routes, dashboard.routes)


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="reconciler",
        description="GitOps reconciler for scheduled infrastructure jobs",
        version="0.1.0",
    )
    install_handlers(app)

    @app.middleware("http")
    async def request_logger(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        log.info(
            "%s %s %d %.1f ms",
            request.method,
            request.url.path,  # never the query string: it may hold ?key=
            response.status_code,
            (time.perf_counter() - start) * 1000,
        )
        return response

    for make in ROUTERS:
        app.include_router(make(ctx))
    return app
