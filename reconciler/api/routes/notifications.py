"""``GET /api/notifications``: the outbox, newest first (read key), with the counts per status.

``?status=failed`` lists the notifications that gave up after their last attempt, with the
error of that attempt: what an operator looks at when the failing-notifications alert fires.
The payloads are not returned (they are the run objects that the runs endpoints serve).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from reconciler.api.auth import need_read
from reconciler.api.context import ApiContext
from reconciler.api.models import error_responses
from reconciler.stores.base import OutboxRecord


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def notification_json(o: OutboxRecord) -> dict[str, Any]:
    return {
        "id": o.id,
        "delivery_id": o.delivery_id,
        "event": o.event,
        "channel": o.channel,
        "schedule": o.schedule,
        "template": o.template,
        "run": o.run_id,
        "status": o.status,
        "attempts": o.attempts,
        "next_attempt": _iso(o.next_attempt_at) if o.status in ("pending", "sending") else None,
        "last_error": o.last_error,
        "created": _iso(o.created_at),
        "sent": _iso(o.sent_at),
    }


def routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["notifications"], responses=error_responses(400, 401, 403))

    @router.get(
        "/api/notifications",
        summary="Notifications in the outbox, newest first, and the counts per status",
        dependencies=[Depends(need_read(ctx))],
    )
    def notifications(
        status: Literal["pending", "sending", "sent", "failed"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        store = ctx.store()
        return {
            "notifications": [
                notification_json(o) for o in store.list_notifications(status, limit)
            ],
            "counts": store.notification_counts(),
        }

    return router
