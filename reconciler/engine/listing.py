"""Read models for listings: schedules with their next fire times and last runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.model.documents import Schedule, Settings
from reconciler.planning.plan import SETTINGS_NAME
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


def _template_of(body: str) -> str:
    try:
        return str(json.loads(body)["spec"]["template"])
    except (ValueError, KeyError, TypeError):
        return ""


def list_schedules(store: StateStore, now: datetime, count: int) -> list[ScheduleRow]:
    """Every applied schedule; fire times only for active ones (a paused one has none)."""
    from reconciler.scheduling import WhenError, build_trigger, upcoming

    settings = store.get_object("Settings", SETTINGS_NAME)
    tz = Settings.model_validate_json(settings.body).spec.timezone if settings else "UTC"
    last = store.last_runs()
    rows = []
    for rec in store.list_objects("Schedule"):
        fire: tuple[datetime, ...] = ()
        if rec.state == "active" and count:
            doc = Schedule.model_validate_json(rec.body)
            try:
                trigger = build_trigger(doc.spec.when, tz)
                found = upcoming(trigger, rec.name, now, count)
                fire = tuple(u.fire_at.astimezone(trigger.zone.info) for u in found)
            except WhenError:
                fire = ()
        rows.append(
            ScheduleRow(
                rec.name,
                _template_of(rec.body),
                rec.state or "active",
                rec.state_reason,
                fire,
                last.get(rec.name),
                rec.revision,
            )
        )
    return sorted(rows, key=lambda r: r.name)
