"""``GET /metrics`` (read key): this replica's Prometheus metrics in the text format.

The state's gauges are read through the route's own store connection (``ctx.store()``), never
a loop's. A context whose telemetry is not Prometheus (a test's ``NullTelemetry``) still serves
the state's gauges, from a registry of the route's own with no events in it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from reconciler.api.auth import need_read
from reconciler.api.context import ApiContext
from reconciler.api.metrics import CONTENT_TYPE, PrometheusTelemetry
from reconciler.api.models import error_responses


def routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter(responses=error_responses(401, 403, 503))
    metrics = (
        ctx.telemetry if isinstance(ctx.telemetry, PrometheusTelemetry) else PrometheusTelemetry()
    )

    @router.get(
        "/metrics",
        summary="Prometheus metrics of this replica (text format 0.0.4)",
        dependencies=[Depends(need_read(ctx))],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        tags=["health"],
    )
    def scrape() -> Response:
        return Response(metrics.render(ctx.store()), media_type=CONTENT_TYPE)

    return router
