"""``GET /healthz`` (no key) and ``GET /api/status`` (read key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from reconciler.api.auth import need_read
from reconciler.api.context import ApiContext
from reconciler.api.errors import error
from reconciler.errors import ReconcilerError


def routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", summary="Liveness and readiness", tags=["health"])
    def healthz() -> Response:
        try:
            ctx.store().serial()
        except ReconcilerError as e:
            return error(503, "store-unreachable", str(e))
        behind = ctx.health.firing_behind()
        if behind is not None and behind > ctx.health.behind_limit:
            return error(503, "firing-behind", f"firing is {behind:.0f} s behind its fire times")
        return JSONResponse({"status": "ok"})

    @router.get(
        "/api/status",
        summary="Applied and attempted revisions, replicas, the run queue",
        dependencies=[Depends(need_read(ctx))],
        tags=["status"],
    )
    def status() -> dict[str, Any]:
        from reconciler.engine.status import status_json

        return status_json(ctx.store(), ctx.clock.now())

    return router
