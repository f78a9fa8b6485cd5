"""``GET /api/runs`` (filters, paging), ``GET /api/runs/{id}``, ``GET /api/runs/{id}/log`` (an
offset, to follow a live log) and ``POST /api/runs/{id}/cancel``.

Read endpoints take a read or approve key; cancel takes a trigger key for the run's template
or an approve key, and calls the function of ``reconciler cancel``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request, Security

from reconciler.api.auth import KEY_HEADER, KEY_QUERY, need_key, need_read
from reconciler.api.context import ApiContext
from reconciler.api.errors import ApiError
from reconciler.api.models import CancelAnswer, LogPart, RunOut, RunPage, error_responses
from reconciler.engine.running import cancel_run, run_json
from reconciler.stores.base import FINAL_STATUSES, ApiKey, RunRecord

MAX_ID = 2**63 - 1
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
LOG_CHUNK = 1024 * 1024
"""At most about this many bytes of log per answer."""

Status = Literal[
    "queued", "running", "succeeded", "failed", "cancelled", "timed-out", "abandoned", "skipped"
]
Trigger = Literal["schedule", "api", "cli", "catch-up", "retry"]
RunIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="The run's id")]


def routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["runs"], dependencies=[Security(KEY_HEADER), Security(KEY_QUERY)])
    read = [Depends(need_read(ctx))]

    def found(run_id: int) -> RunRecord:
        run = ctx.store().get_run(run_id)
        if run is None:
            raise ApiError(404, "not-found", f"no run {run_id}")
        return run

    @router.get(
        "/api/runs",
        summary="Run history, newest first, in pages",
        response_model=RunPage,
        dependencies=read,
        responses=error_responses(400, 401, 403),
    )
    def list_runs(
        schedule: Annotated[str | None, Query(max_length=253)] = None,
        template: Annotated[str | None, Query(max_length=253)] = None,
        status: Status | None = None,
        trigger: Trigger | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        before: Annotated[
            int | None, Query(ge=1, le=MAX_ID, description="Only runs older than this id")
        ] = None,
    ) -> dict[str, Any]:
        page = ctx.store().page_runs(
            schedule=schedule,
            status=status,
            template=template,
            trigger=trigger,
            before=before,
            limit=limit,
        )
        nxt = None
        if len(page) == limit:
            query = {
                k: v
                for k, v in (
                    ("schedule", schedule),
                    ("template", template),
                    ("status", status),
                    ("trigger", trigger),
                    ("limit", str(limit)),
                    ("before", str(page[-1].id)),
                )
                if v is not None
            }
            nxt = "/api/runs?" + urlencode(query)
        return {"runs": [run_json(r) for r in page], "next": nxt}

    @router.get(
        "/api/runs/{run_id}",
        summary="One run (the object of reconciler runs show)",
        response_model=RunOut,
        dependencies=read,
        responses=error_responses(401, 403, 404),
    )
    def show_run(run_id: RunIdPath) -> dict[str, Any]:
        return run_json(found(run_id))

    @router.get(
        "/api/runs/{run_id}/log",
        summary="A run's log from a byte offset (follow a live log with next_offset)",
        response_model=LogPart,
        dependencies=read,
        responses=error_responses(401, 403, 404),
    )
    def run_log(
        run_id: RunIdPath,
        offset: Annotated[int, Query(ge=0, le=MAX_ID, description="UTF-8 byte offset")] = 0,
    ) -> dict[str, Any]:
        store = ctx.store()
        run = found(run_id)
        part = store.read_log(run_id, offset, LOG_CHUNK)
        final = run.status in FINAL_STATUSES
        return {
            "offset": part.offset,
            "next_offset": part.next_offset,
            "data": part.text,
            "complete": final and part.next_offset >= run.log_size,
            "truncated": part.truncated,
        }

    @router.post(
        "/api/runs/{run_id}/cancel",
        summary="Cancel a queued or running run",
        response_model=CancelAnswer,
        responses=error_responses(401, 403, 404, 409),
    )
    def cancel(request: Request, run_id: RunIdPath) -> dict[str, Any]:
        key: ApiKey = need_key(ctx, request)
        run = found(run_id)
        allowed = ("approve" in key.scopes and key.user) or (
            "trigger" in key.scopes and run.template in key.templates
        )
        if not allowed:
            raise ApiError(
                403,
                "forbidden",
                f"API key {key.name} may not cancel runs of template {run.template} "
                "(a trigger key for it or an approve key may)",
            )
        outcome, rec = cancel_run(ctx.store(), run_id, ctx.clock.now(), f"API key {key.name}")
        if outcome == "not-found" or rec is None:
            raise ApiError(404, "not-found", f"no run {run_id}")
        if outcome == "final":
            raise ApiError(409, "conflict", f"run {run_id} already ended: {rec.status}")
        return {"run": run_json(rec), "cancel_requested": outcome == "requested"}

    return router
