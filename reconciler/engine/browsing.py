"""Read models for the dashboard's pages: bounded pages of schedules with their next fire
times, the fires of a page of schedules in a window (the timeline), one schedule's ledger.

Called by :mod:`reconciler.api.dashboard`. Unlike :func:`reconciler.engine.listing.list_schedules`
(every schedule, for the CLI), each function here reads one page from the store's indexed
queries and computes fire times only for the schedules on it, so a page costs about the same
with 10,000 schedules as with ten. Reads the store; never writes; the clock is an argument.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.engine.listing import ScheduleRow
from reconciler.model.documents import Settings
from reconciler.planning.plan import SETTINGS_NAME
from reconciler.scheduling.triggers import Trigger
from reconciler.stores.base import ObjectRecord, ObjectState, StateStore

#: At most this many fires of one schedule are drawn in a timeline row (an ``every: 1m``
#: schedule has 10,080 in a week; the row says how many were left out).
TIMELINE_CAP = 300


@dataclass(frozen=True)
class SchedulePage:
    """One page of the Upcoming & Recurring list."""

    rows: list[ScheduleRow]
    next_after: str | None
    """The name to pass as ``after`` for the next page (None: this is the last one)."""
    counts: dict[str, int]
    """Schedules per state, over the whole state (not only this page)."""
    owners: dict[str, str]
    """Each row's owner."""


@dataclass(frozen=True)
class TimelineRow:
    """The fires of one schedule in the timeline's window."""

    schedule: str
    template: str
    fires: tuple[datetime, ...]
    """In the schedule's time zone, soonest first, at most :data:`TIMELINE_CAP`."""
    capped: bool
    """True when the schedule fires more often in the window than is drawn."""


def default_timezone(store: StateStore) -> str:
    settings = store.get_object("Settings", SETTINGS_NAME)
    return Settings.model_validate_json(settings.body).spec.timezone if settings else "UTC"


def _spec_of(rec: ObjectRecord) -> dict[str, Any]:
    try:
        spec = json.loads(rec.body)["spec"]
        return spec if isinstance(spec, dict) else {}
    except (ValueError, KeyError, TypeError):
        return {}


def trigger_of(spec: dict[str, Any], tz: str) -> Trigger | None:
    """The trigger of a schedule's ``spec`` (None when its ``when`` does not build)."""
    from reconciler.model.schedule import When
    from reconciler.scheduling import WhenError, build_trigger

    try:
        return build_trigger(When.model_validate(spec.get("when")), tz)
    except (WhenError, ValueError):
        return None


def schedule_page(
    store: StateStore,
    now: datetime,
    *,
    after: str | None,
    limit: int,
    count: int,
    state: ObjectState | None = None,
    contains: str | None = None,
) -> SchedulePage:
    """``limit`` schedules by name after ``after``, each with its next ``count`` fire times
    (active ones only) and its last run. Schedules with the same ``when`` and no jitter share
    one computation, as in :func:`~reconciler.engine.listing.list_schedules`."""
    records = store.page_objects("Schedule", after, limit + 1, state, contains)
    more = len(records) > limit
    records = records[:limit]
    rows, owners = _rows(store, records, now, count)
    return SchedulePage(
        rows,
        records[-1].name if more and records else None,
        store.count_states("Schedule"),
        owners,
    )


def schedule_row(store: StateStore, now: datetime, name: str, count: int) -> ScheduleRow | None:
    """One schedule as a row of the list, with its next ``count`` fire times."""
    rec = store.get_object("Schedule", name)
    return None if rec is None else _rows(store, [rec], now, count)[0][0]


def _rows(
    store: StateStore, records: list[ObjectRecord], now: datetime, count: int
) -> tuple[list[ScheduleRow], dict[str, str]]:
    from reconciler.scheduling import upcoming

    tz = default_timezone(store)
    last = store.last_runs_of([r.name for r in records])
    shared: dict[str, tuple[datetime, ...]] = {}
    rows: list[ScheduleRow] = []
    owners: dict[str, str] = {}
    for rec in records:
        spec = _spec_of(rec)
        fire: tuple[datetime, ...] = ()
        if rec.state == "active" and count:
            key = json.dumps(spec.get("when"), sort_keys=True)
            cached = shared.get(key)
            if cached is not None:
                fire = cached
            else:
                trigger = trigger_of(spec, tz)
                if trigger is not None:
                    found = upcoming(trigger, rec.name, now, count)
                    fire = tuple(u.fire_at.astimezone(trigger.zone.info) for u in found)
                    if trigger.jitter is None:  # jitter depends on the schedule's name
                        shared[key] = fire
        owners[rec.name] = str(spec.get("owner", ""))
        rows.append(
            ScheduleRow(
                rec.name,
                str(spec.get("template", "")),
                rec.state or "active",
                rec.state_reason,
                fire,
                last.get(rec.name),
                rec.revision,
            )
        )
    return rows, owners


def timeline(
    store: StateStore,
    now: datetime,
    until: datetime,
    *,
    after: str | None,
    limit: int,
) -> tuple[list[TimelineRow], str | None]:
    """The fires strictly after ``now`` and before ``until`` of ``limit`` active schedules by
    name after ``after``; and the name to page on from (None: the last page)."""
    from reconciler.scheduling import upcoming

    tz = default_timezone(store)
    records = store.page_objects("Schedule", after, limit + 1, "active")
    more = len(records) > limit
    records = records[:limit]
    rows: list[TimelineRow] = []
    for rec in records:
        spec = _spec_of(rec)
        trigger = trigger_of(spec, tz)
        fires: list[datetime] = []
        capped = False
        if trigger is not None:
            found = upcoming(trigger, rec.name, now, TIMELINE_CAP + 1)
            for u in found:
                if u.fire_at >= until:
                    break
                fires.append(u.fire_at.astimezone(trigger.zone.info))
            capped = len(fires) > TIMELINE_CAP
        rows.append(
            TimelineRow(
                rec.name, str(spec.get("template", "")), tuple(fires[:TIMELINE_CAP]), capped
            )
        )
    return rows, (records[-1].name if more and records else None)


def schedule_ledger(
    store: StateStore, name: str, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """The contract's slot objects of one schedule, newest first, with their fire times
    (jitter computed for this schedule only, not by arming every schedule of the state)."""
    from reconciler.engine.ledger import entry_json
    from reconciler.scheduling.jitter import fire_at

    entries = store.list_slots(name, since, limit)
    rec = store.get_object("Schedule", name) if entries else None
    trigger = trigger_of(_spec_of(rec), default_timezone(store)) if rec is not None else None
    out = []
    for e in entries:
        at = e.slot
        if trigger is not None and trigger.jitter is not None:
            at = fire_at(e.schedule, e.slot, trigger.jitter, trigger.next_after(e.slot))
        out.append(entry_json(e, at))
    return out


def schedule_detail(store: StateStore, name: str) -> dict[str, Any] | None:
    """What the schedule page shows above its ledger: the applied document's fields."""
    rec = store.get_object("Schedule", name)
    if rec is None:
        return None
    try:
        doc = json.loads(rec.body)
    except ValueError:
        doc = {}
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    spec = _spec_of(rec)
    return {
        "name": rec.name,
        "state": rec.state or "active",
        "reason": rec.state_reason,
        "revision": rec.revision,
        "template": str(spec.get("template", "")),
        "owner": str(spec.get("owner", "")),
        "when": {k: v for k, v in (spec.get("when") or {}).items() if v is not None},
        "description": (meta or {}).get("description"),
        "updated": rec.updated_at,
    }
