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

from reconciler.engine.approving import QueueEntry
from reconciler.engine.listing import ScheduleRow
from reconciler.model.documents import Settings
from reconciler.model.schedule import WEEKDAYS
from reconciler.planning.plan import SETTINGS_NAME
from reconciler.scheduling.cron import WEEKDAY_WORDS, parse_cron
from reconciler.scheduling.explain import MONTH_WORDS, describe_cron
from reconciler.scheduling.triggers import Trigger
from reconciler.stores.base import ObjectRecord, ObjectState, StateStore

#: At most this many fires of one schedule are computed for a timeline row (an ``every: 1m``
#: schedule has 10,080 in a week); a row with more draws the rest as a band (``dense``).
TIMELINE_CAP = 60


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
    """True when the schedule fires more often in the window than :data:`TIMELINE_CAP`: it
    keeps firing about every ``(fires[-1] - fires[0]) / (len(fires) - 1)`` to the end."""


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


def schedule_rows(
    store: StateStore, records: list[ObjectRecord], now: datetime, count: int
) -> list[ScheduleRow]:
    """The listing rows of ``records`` (``schedules``, ``GET /api/schedules``, the dashboard)."""
    return _rows(store, records, now, count)[0]


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
    shared: dict[str, tuple[tuple[datetime, ...], bool]] = {}
    for rec in records:
        spec = _spec_of(rec)
        key = json.dumps(spec.get("when"), sort_keys=True)
        found = shared.get(key)
        if found is None:
            trigger = trigger_of(spec, tz)
            fires: list[datetime] = []
            if trigger is not None:
                for u in upcoming(trigger, rec.name, now, TIMELINE_CAP + 1):
                    if u.fire_at >= until:
                        break
                    fires.append(u.fire_at.astimezone(trigger.zone.info))
            found = (tuple(fires[:TIMELINE_CAP]), len(fires) > TIMELINE_CAP)
            if trigger is not None and trigger.jitter is None:
                shared[key] = found
        rows.append(TimelineRow(rec.name, str(spec.get("template", "")), found[0], found[1]))
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
    raw = spec.get("when")
    when = {k: v for k, v in raw.items() if v is not None} if isinstance(raw, dict) else {}
    return {
        "name": rec.name,
        "state": rec.state or "active",
        "reason": rec.state_reason,
        "revision": rec.revision,
        "template": str(spec.get("template", "")),
        "owner": str(spec.get("owner", "")),
        "when": when,
        "when_text": describe_when(when, default_timezone(store)),
        "description": (meta or {}).get("description"),
        "updated": rec.updated_at,
    }


@dataclass(frozen=True)
class ApprovalPage:
    """One page of the approval queue."""

    entries: list[QueueEntry]
    due: dict[str, datetime]
    """The slot of each waiting ``at:`` whose time passed while it waited (approving it runs
    it at once, so the dashboard asks to confirm)."""
    next_after: str | None


def approval_page(
    store: StateStore, now: datetime, *, after: str | None, limit: int, waiting: bool
) -> ApprovalPage:
    """``limit`` schedules by name whose content is decided by approvals (``waiting``: only
    those in ``awaiting-approval``), as :func:`reconciler.engine.approving.approval_queue`
    describes them, but read a page at a time from the store's index instead of every
    schedule of the state."""
    from reconciler.engine.approving import past_due_slot, policy_in_force
    from reconciler.model.documents import JobTemplate
    from reconciler.model.template import ApprovalRule
    from reconciler.planning.approvals import Decisions, counted

    state: ObjectState | None = "awaiting-approval" if waiting else None
    records = store.page_objects("Schedule", after, limit + 1, state, needs_approval=True)
    more = len(records) > limit
    records = records[:limit]
    entries: list[QueueEntry] = []
    due: dict[str, datetime] = {}
    policy = policy_in_force(store) if records else None
    rules: dict[str, ApprovalRule] = {}
    for rec in records:
        assert rec.approval_hash is not None and policy is not None
        template = str(_spec_of(rec).get("template", ""))
        if template not in rules:
            t = store.get_object("JobTemplate", template)
            try:
                rules[template] = (
                    JobTemplate.model_validate_json(t.body).spec.approval if t else ApprovalRule()
                )
            except ValueError:
                rules[template] = ApprovalRule()
        # the decisions that count, as the planner counts them: eligible users under the
        # Policy in force who did not author this content (the latest decision of each)
        approve: set[str] = set()
        deny: set[str] = set()
        for a in store.list_approvals(rec.name, rec.approval_hash):
            (approve if a.decision == "approve" else deny).add(a.user)
        authors = policy.users_by_email(rec.authors)
        d = counted(
            Decisions(frozenset(approve), frozenset(deny)),
            policy,
            template,
            rules[template],
            authors,
        )
        users = sorted(authors)
        entries.append(
            QueueEntry(
                rec.name,
                template,
                ", ".join(users) if users else (", ".join(rec.authors) or None),
                rec.approval_hash,
                rec.state or "active",
                tuple(sorted(d.approvers)),
                rules[template].count,
                tuple(sorted(d.denied_by)),
                rec.state_reason,
            )
        )
        if rec.state == "awaiting-approval":
            slot = past_due_slot(store, rec, now)
            if slot is not None:
                due[rec.name] = slot
    return ApprovalPage(entries, due, records[-1].name if more and records else None)


#: "tue" -> "Tuesday": the model's weekday names with the words cron explain uses
_DAY_NAMES = dict(zip(WEEKDAYS, WEEKDAY_WORDS, strict=True))


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe_when(when: dict[str, Any], default_zone: str) -> str | None:
    """A schedule's ``when`` (as applied) in words, for the schedule page: "every day at
    02:00, Europe/Berlin time". None when it is not a form this version knows (the page
    then shows the raw value only)."""
    try:
        zone = str(when.get("timezone") or default_zone)
        if "cron" in when:
            said = describe_cron(parse_cron(str(when["cron"]))).rstrip(".")
            text = said[:1].lower() + said[1:]
        elif "every" in when:
            text = f"every {when['every']}"
        elif "at" in when:
            text = f"once, at {str(when['at']).replace('T', ' ')}"
            if datetime.fromisoformat(str(when["at"])).tzinfo is not None:
                return text  # an instant with its offset: no time zone to name
        elif "daily" in when:
            text = f"every day at {when['daily']['at']}"
        elif "weekly" in when:
            days = [_DAY_NAMES.get(str(d), str(d)) for d in when["weekly"]["days"]]
            text = f"every {_and(days)} at {when['weekly']['at']}"
        elif "monthly" in when:
            day = when["monthly"]["day"]
            which = "the last day" if day == "last" else f"day {int(day)}"
            text = f"on {which} of every month at {when['monthly']['at']}"
        elif "yearly" in when:
            y = when["yearly"]
            text = f"every year on {int(y['day'])} {MONTH_WORDS[int(y['month']) - 1]} at {y['at']}"
        else:
            return None
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    text += f", {zone} time"
    if when.get("start"):
        text += f", from {str(when['start']).replace('T', ' ')}"
    if when.get("end"):
        text += f", until {str(when['end']).replace('T', ' ')}"
    if when.get("jitter"):
        text += f", each fire up to {when['jitter']} after its slot (jitter)"
    return text
