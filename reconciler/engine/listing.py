"""Read models for listings: schedules with their next fire times and last runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.stores.base import RunRecord, StateStore


@dataclass(frozen=True)
class ScheduleRow:
    name: str
    template: str
    state: str
    reason: str | None
    next: tuple[datetime, ...]
    last_run: RunRecord | None
    revision: str | None

    def to_json(self) -> dict[str, Any]:
        last = None
        if self.last_run is not None:
            r = self.last_run
            last = {
                "id": r.id,
                "status": r.status,
                "slot": r.slot.isoformat() if r.slot else None,
                "finished": r.finished_at.isoformat() if r.finished_at else None,
            }
        return {
            "name": self.name,
            "template": self.template,
            "state": self.state,
            "reason": self.reason,
            "next": [t.isoformat() for t in self.next],
            "last_run": last,
            "revision": self.revision,
        }


def _spec_of(body: str) -> dict[str, Any]:
    try:
        spec = json.loads(body)["spec"]
        return spec if isinstance(spec, dict) else {}
    except (ValueError, KeyError, TypeError):
        return {}


def list_schedules(store: StateStore, now: datetime, count: int) -> list[ScheduleRow]:
    """Every applied schedule; fire times only for active ones (a paused one has none).

    Only ``spec.when`` of each body is validated (not the whole document), and schedules
    whose ``when`` is the same and has no jitter share one computation of their fire times:
    in real repositories many schedules say ``daily at 02:00``. The rows are the dashboard's
    (:func:`reconciler.engine.browsing.schedule_rows`), for every schedule at once.
    """
    from reconciler.engine.browsing import schedule_rows

    rows = schedule_rows(store, store.list_objects("Schedule"), now, count)
    return sorted(rows, key=lambda r: r.name)


def system_json(store: StateStore) -> list[dict[str, Any]]:
    """The daemon's own recurring jobs (``schedules --system``, ``?system=true`` of the API)."""
    return [
        {
            "name": j.name,
            "template": None,
            "state": "system",
            "every_seconds": j.every_seconds,
            "last_at": j.last_at.isoformat(),
            "next": [(j.last_at + timedelta(seconds=j.every_seconds)).isoformat()],
            "detail": j.detail,
        }
        for j in store.list_system()
    ]
