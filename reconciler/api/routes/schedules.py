"""``GET /api/schedules`` (the ``schedules`` object of the CLI), ``GET /api/schedules/{name}``
and ``GET /api/schedules/{name}/slots`` (the ``slots`` object). A read or approve key.

The approval actions on a schedule (``/approve``, ``/deny``, ``/dry-run``) are
:mod:`reconciler.api.routes.approvals`'.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Security

from reconciler.api.auth import KEY_HEADER, KEY_QUERY, need_read
from reconciler.api.context import ApiContext
from reconciler.api.errors import ApiError
from reconciler.api.models import ScheduleDetail, ScheduleList, SlotList, error_responses
from reconciler.engine.ledger import ledger_rows
from reconciler.engine.listing import list_schedules, system_json

NamePath = Annotated[str, Path(max_length=253, description="The schedule's name")]


def routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter(
        tags=["schedules"],
        dependencies=[Security(KEY_HEADER), Security(KEY_QUERY), Depends(need_read(ctx))],
    )

    @router.get(
        "/api/schedules",
        summary="Applied schedules with state, next fire times and last result",
        response_model=ScheduleList,
        response_model_exclude_unset=True,
        responses=error_responses(400, 401, 403),
    )
    def schedules(
        upcoming: Annotated[
            int, Query(ge=0, le=100, description="Next fire times per schedule")
        ] = 3,
        system: Annotated[bool, Query(description="Also the daemon's own jobs")] = False,
    ) -> dict[str, Any]:
        store = ctx.store()
        out: dict[str, Any] = {
            "schedules": [r.to_json() for r in list_schedules(store, ctx.clock.now(), upcoming)]
        }
        if system:
            out["system"] = system_json(store)
        return out

    @router.get(
        "/api/schedules/{name}",
        summary="One schedule: its listing row and applied spec",
        response_model=ScheduleDetail,
        responses=error_responses(400, 401, 403, 404),
    )
    def schedule(
        name: NamePath,
        upcoming: Annotated[int, Query(ge=0, le=100)] = 3,
    ) -> dict[str, Any]:
        store = ctx.store()
        rec = store.get_object("Schedule", name)
        rows = list_schedules(store, ctx.clock.now(), upcoming) if rec is not None else []
        row = next((r for r in rows if r.name == name), None)
        if rec is None or row is None:
            raise ApiError(404, "not-found", f"no schedule {json.dumps(name)} in the state")
        spec = json.loads(rec.body).get("spec", {})
        return {**row.to_json(), "spec": spec if isinstance(spec, dict) else {}}

    @router.get(
        "/api/schedules/{name}/slots",
        summary="The slot ledger of a schedule, newest first",
        response_model=SlotList,
        responses=error_responses(400, 401, 403, 404),
    )
    def slots(
        name: NamePath,
        since: Annotated[
            datetime | None, Query(description="Only slots at or after this instant")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        store = ctx.store()
        if since is not None and (since.tzinfo is None or since.utcoffset() is None):
            raise ApiError(400, "bad-request", "since: give the instant with Z or an offset")
        if store.get_object("Schedule", name) is None and not store.list_slots(name, limit=1):
            raise ApiError(404, "not-found", f"no schedule {json.dumps(name)} in the state")
        return {"slots": ledger_rows(store, name, since, limit)}

    return router
