"""``GET /api/schedules.ics``: an RFC 5545 feed of upcoming fire times (read key).

Calendar clients cannot send headers, so the key usually comes as ``?key=`` in the feed URL
(never logged: the request log prints paths only). ``?label=team=web`` (repeatable) keeps the
schedules whose labels hold every pair (``?label=team``: the label with any value);
``?days=`` (1-31, default 7) is the window;
``?limit=`` (1-500, default 100) caps the fires of one schedule (an ``every: 1m`` schedule
would otherwise fill a calendar).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from reconciler.api import ics
from reconciler.api.auth import need_read
from reconciler.api.context import ApiContext
from reconciler.api.models import error_responses


def routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter(responses=error_responses(400, 401, 403))

    @router.get(
        "/api/schedules.ics",
        summary="Upcoming fire times as an iCalendar feed",
        dependencies=[Depends(need_read(ctx))],
        tags=["schedules"],
        response_class=Response,
        responses={200: {"content": {"text/calendar": {}}}},
    )
    def calendar(
        label: Annotated[
            list[str] | None,
            Query(description="KEY=VALUE (that value) or KEY (any value); repeatable, all hold"),
        ] = None,
        days: Annotated[int, Query(ge=1, le=31)] = 7,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Response:
        from reconciler.engine.calendar import upcoming_fires

        wanted: dict[str, str | None] = {}
        for item in label or []:
            key, sep, value = item.partition("=")
            if key:  # an empty KEY selects nothing in particular
                wanted[key] = value if sep else None
        now = ctx.clock.now()
        fires = upcoming_fires(ctx.store(), now, now + timedelta(days=days), limit, wanted)
        return Response(
            ics.render(fires, now),
            media_type="text/calendar; charset=utf-8",
            headers={"Content-Disposition": 'inline; filename="schedules.ics"'},
        )

    return router
