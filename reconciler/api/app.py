"""The HTTP application served by ``reconciler serve`` (FastAPI on uvicorn, in-process).

:func:`create_app` assembles the routers of :mod:`reconciler.api.routes` (one module per
resource) over one :class:`~reconciler.api.context.ApiContext`. Every error answer is
``{"error": {"code", "message"}}`` (:mod:`reconciler.api.errors`). Requests are logged
without their query strings (uvicorn's access log is off: it would print ``?key=`` secrets),
and every request body is limited to ``ctx.body_limit`` bytes (413), both by
:mod:`reconciler.api.limits`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from reconciler.api import dashboard
from reconciler.api.context import ApiContext
from reconciler.api.errors import install_handlers
from reconciler.api.limits import BodyLimit, RequestLog
from reconciler.api.models import ErrorBody
from reconciler.api.routes import (
    approvals,
    calendar,
    health,
    jobs,
    metrics,
    notifications,
    runs,
    schedules,
    webhooks,
)

log = logging.getLogger("reconciler.http")

ROUTERS = (
    health.routes,
    metrics.routes,
    jobs.routes,
    runs.routes,
    calendar.routes,  # /api/schedules.ics before /api/schedules/{name}
    schedules.routes,
    approvals.routes,
    webhooks.routes,
    notifications.routes,
    dashboard.routes,
)


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="reconciler",
        description="GitOps reconciler for scheduled infrastructure jobs",
        version="0.1.0",
        # answers every route may give: a bad query, no or a wrong key, a body over the limit
        responses={
            status: {"model": ErrorBody, "description": what}
            for status, what in (
                (400, "Bad request: a query parameter, header or body that is not valid"),
                (401, "No API key, or an unknown or revoked one"),
                (403, "The key's scopes do not allow this"),
                (413, "The request body is over the size limit"),
            )
        },
    )
    install_handlers(app)

    # the last added is the outermost: the log sees every answer, the limit's 413s too
    app.add_middleware(BodyLimit, limit=ctx.body_limit)
    app.add_middleware(RequestLog, log=log)

    for make in ROUTERS:
        app.include_router(make(ctx))
    return app
