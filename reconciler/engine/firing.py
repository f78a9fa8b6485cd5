"""Firing: every due slot of every applied schedule gets exactly one ledger entry.

Who calls it: the daemon's firing thread (:class:`FiringLoop`), ``reconciler simulate`` (the
same code under a manual clock, with no worker), and tests. The decisions are pure functions
of the applied schedules, their cursors and the time (:func:`reconciler.scheduling.slots.
plan_due` for misfire, :func:`~reconciler.scheduling.slots.decide_overlap` for overlap); this
module turns them into :class:`~reconciler.stores.base.FireBatch` writes.

The loop keeps a heap of each schedule's next fire time (slot plus jitter) and sleeps until the
earliest, or until :meth:`FiringLoop.poke` says the applied schedules changed. At a wake it
takes every schedule that is due, computes its entries from its cursor (the last slot its ledger
accounts for) and records all of them in one transaction: a burst of a thousand slots due at
one instant is one commit. Each batch is compared-and-swapped on its schedule's cursor, so a
second replica that computed the same slots records nothing; the ledger's unique
``(schedule, slot)`` key is the last line of defence.

Start-up reads the store's firing rows (:meth:`~reconciler.stores.base.StateStore.firing_heads`:
per schedule a few short columns and its cursor, no body) and arms each schedule as a small
:class:`Armed` over a :class:`Shape` shared by the schedules equal to it but in name (their
trigger, policies, owner check and run fields are worked out once); next fire times and due
entries are shared the same way between schedules of one shape with the same last slot.

Where a schedule starts counting: its cursor when it has one under the same ``when``; else the
instant its current ``when`` was applied. An ``at:`` time already past when it was applied runs
once, right away (the contract), whatever the misfire policy says.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from reconciler.clock import Clock
from reconciler.engine.collector import ArmedFreeze, gc_paused
from reconciler.engine.telemetry import NullTelemetry, Telemetry
from reconciler.errors import StateError
from reconciler.model.documents import JobTemplate, Schedule, Settings
from reconciler.model.firing import FiringSpec, fields_key, firing_spec
from reconciler.model.policy import PolicySpec, matches
from reconciler.model.variables import resolve
from reconciler.planning.plan import SETTINGS_NAME
from reconciler.scheduling import Trigger, WhenError, build_trigger, decide_overlap
from reconciler.scheduling.jitter import fire_at
from reconciler.scheduling.slots import DEFAULT_GRACE, DueEntry, fold_skips, plan_due
from reconciler.scheduling.zones import floor_seconds, instant
from reconciler.stores.base import (
    Activity,
    Cursor,
    FireBatch,
    FireResult,
    FiringHead,
    LedgerWrite,
    NewRun,
    ObjectRecord,
    RunId,
    RunRecord,
    StateStore,
)

log = logging.getLogger("reconciler.firing")

#: Skip reasons of the ledger by schedule state.
STATE_SKIP: dict[str, tuple[str, str]] = {
    "paused": ("paused", "the schedule is paused (enabled: false in Git)"),
    "awaiting-approval": ("approval-pending", "the schedule waits for approval"),
    "denied": ("denied", "the schedule was denied for this content"),
}


class Context:
    """What arming needs besides a schedule's own firing row, read once per reload: the default
    time zone, the templates, who may run what (the applied Policy), caches shared by schedules
    (triggers by ``when``, next fire times, run fields) and how to read a schedule's body."""

    def __init__(
        self,
        tz: str,
        templates: dict[str, JobTemplate],
        policies: list[PolicySpec],
        body_of: Callable[[str], str | None] = lambda name: None,
    ) -> None:
        self.tz = tz
        self.templates = templates
        self.users = {u.name: u for p in policies for u in p.users}
        self.permissions = [perm for p in policies for perm in p.permissions]
        #: the shared part of the armed schedules, by firing row
        self.shapes: dict[str, Shape] = {}
        #: the trigger and cursor key of each ``when`` (canonical JSON)
        self.triggers: dict[str, tuple[Trigger, str]] = {}
        #: (``when``, last slot done or None for an ``at:`` never fired) -> (the next slot, the
        #: slot after it)
        self.nexts: dict[tuple[str, datetime | None], tuple[datetime | None, datetime | None]] = {}
        self._owners: dict[tuple[str, str], str | None] = {}
        self._windows: dict[str, timedelta] = {}
        #: run fields by what they depend on (:func:`~reconciler.model.firing.fields_key`):
        #: schedules that differ only in their name and ``when`` share one validation and
        #: resolution, and only the first of them has its body read
        self.fields: dict[str, dict[str, Any]] = {}
        #: the applied body of a schedule, read when its run fields are first needed
        self.body_of = body_of
        #: the (kind, name, content hash) of what was read (see :func:`context_key`)
        self.key: tuple[tuple[str, str, str], ...] = ()

    def owner_problem(self, owner: str, template: str) -> str | None:
        """Why ``owner`` may not run ``template`` under the applied Policy, or None."""
        key = (owner, template)
        if key not in self._owners:
            if template not in self.templates:
                self._owners[key] = f'its template "{template}" is not applied'
            else:
                user = self.users.get(owner)
                if user is None:
                    self._owners[key] = f'its owner "{owner}" is not a Policy user any more'
                elif any(p.applies_to(user) and matches(p.run, template) for p in self.permissions):
                    self._owners[key] = None
                else:
                    self._owners[key] = (
                        f'its owner "{owner}" no longer holds run on template "{template}"'
                    )
        return self._owners[key]

    def window(self, text: Any) -> timedelta:
        if text is None:
            return timedelta(days=1)
        key = str(text)
        if key not in self._windows:
            from reconciler.model.common import parse_duration

            self._windows[key] = parse_duration(key)
        return self._windows[key]

    def trigger(self, when: str) -> tuple[Trigger, str]:
        """The trigger of ``when`` (canonical JSON) and its cursor key, built once per reload."""
        got = self.triggers.get(when)
        if got is None:
            from reconciler.model.schedule import When

            raw = json.loads(when)
            zone = raw.get("timezone") or self.tz
            # the cursor's key: what the slots depend on (the ``when`` and its zone)
            wh = hashlib.sha256((when + "\x00" + zone).encode()).hexdigest()[:32]
            got = self.triggers[when] = (build_trigger(When.model_validate(raw), self.tz), wh)
        return got


class Shape:
    """What schedules with equal firing rows share (most of a large fleet differs only in
    names): the trigger and cursor key of their ``when``, their policies, template and owner,
    the owner check and the run fields once worked out."""

    __slots__ = (
        "ctx",
        "fields",
        "fields_key",
        "misfire",
        "overlap",
        "owner",
        "owner_checked",
        "shape_key",
        "template",
        "trigger",
        "when",
        "when_hash",
        "window_text",
    )

    def __init__(self, spec: FiringSpec, ctx: Context) -> None:
        self.ctx = ctx
        self.trigger, self.when_hash = ctx.trigger(spec.when)
        self.when, self.template, self.owner = spec.when, spec.template, spec.owner
        self.misfire, self.overlap, self.window_text = spec.misfire, spec.overlap, spec.window
        self.fields_key, self.shape_key = spec.fields_key, spec.shape
        self.fields: dict[str, Any] | None = None
        self.owner_checked: tuple[str | None] | None = None


class Armed:
    """One applied schedule as the firing loop holds it. Arming is cheap (the firing row's
    :class:`Shape`, shared with the schedules equal to it but in name, and the next fire time);
    the rest (the body, the validated document, variables, owner check) is worked out when a
    schedule of the shape first has a due slot."""

    __slots__ = (
        "approval_hash",
        "commit",
        "cursor",
        "generation",
        "name",
        "next_fire",
        "provenance",
        "shape",
        "since",
        "state",
        "state_reason",
    )

    def __init__(
        self,
        name: str,
        shape: Shape,
        state: str,
        state_reason: str | None,
        since: datetime,
        commit: str | None,
        approval_hash: str | None = None,
    ) -> None:
        # a few slots, the rest shared: 100,000 armed schedules must fit in a few hundred MB
        self.name, self.shape, self.state, self.state_reason = name, shape, state, state_reason
        self.since, self.commit, self.approval_hash = since, commit, approval_hash
        self.cursor: Cursor | None = None
        self.next_fire: datetime | None = None
        self.generation = 0
        #: what its runs record as provenance (see :func:`fill_provenance`); None: not read yet
        #: (shared by the schedules with the same provenance)
        self.provenance: dict[str, Any] | None = None

    @property
    def ctx(self) -> Context:
        return self.shape.ctx

    @property
    def trigger(self) -> Trigger:
        return self.shape.trigger

    @property
    def when_hash(self) -> str:
        return self.shape.when_hash

    @property
    def template(self) -> str:
        return self.shape.template

    @property
    def owner(self) -> str:
        return self.shape.owner

    @property
    def misfire(self) -> str:
        return self.shape.misfire

    @property
    def overlap(self) -> str:
        return self.shape.overlap

    @property
    def window(self) -> timedelta:
        return self.shape.ctx.window(self.shape.window_text)

    @property
    def owner_problem(self) -> str | None:
        sh = self.shape
        if sh.owner_checked is None:
            sh.owner_checked = (sh.ctx.owner_problem(sh.owner, sh.template),)
        return sh.owner_checked[0]

    @property
    def run_fields(self) -> dict[str, Any]:
        """NewRun fields common to every slot: variables, sensitive names, targets, simulate."""
        sh = self.shape
        if sh.fields is None:
            sh.fields = _run_fields(self)
        return sh.fields


def _run_fields(a: Armed) -> dict[str, Any]:
    cached = a.ctx.fields.get(a.shape.fields_key)
    if cached is not None:
        return cached
    body = a.ctx.body_of(a.name)
    if body is None:
        raise ValueError("the schedule is no longer applied")
    try:
        key = fields_key(json.loads(body)["spec"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"its body is not a schedule's ({e})") from None
    cached = a.ctx.fields.get(key)
    if cached is None:
        cached = a.ctx.fields[key] = _resolve_fields(body, a.ctx)
    return cached


def _resolve_fields(body: str, ctx: Context) -> dict[str, Any]:
    spec = Schedule.model_validate_json(body).spec
    template = ctx.templates.get(spec.template)
    fields: dict[str, Any] = {"variables": {}, "sensitive": frozenset(), "targets": {}}
    if template is not None:
        resolved = resolve(template.spec, spec.variables, None)
        sensitive = frozenset(resolved.secret_values) | frozenset(resolved.secrets)
        targets = spec.targets if not spec.targets.empty else template.spec.targets
        fields = {
            "variables": {**resolved.public(), **dict.fromkeys(sensitive, "")},
            "sensitive": sensitive,
            "targets": targets.model_dump(),
        }
    fields["simulate"] = spec.mode == "simulate"
    return fields


@dataclass
class Applied:
    """What the firing loop read from the state: armed schedules and the ones it could not arm."""

    armed: dict[str, Armed] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    heads: dict[str, int] = field(default_factory=dict)
    """What says that each schedule read changed (see :func:`_head`)."""
    context: tuple[tuple[str, str, str], ...] = ()


def read_context(store: StateStore) -> Context:
    settings = store.get_object("Settings", SETTINGS_NAME)
    tz = Settings.model_validate_json(settings.body).spec.timezone if settings else "UTC"
    seen = [settings] if settings else []
    templates: dict[str, JobTemplate] = {}
    template_recs = store.list_objects("JobTemplate")
    policy_recs = store.list_objects("Policy")
    seen += [*template_recs, *policy_recs]
    for rec in template_recs:
        try:
            templates[rec.name] = JobTemplate.model_validate_json(rec.body)
        except ValueError:
            continue
    policies: list[PolicySpec] = []
    for rec in policy_recs:
        try:
            policies.append(PolicySpec.model_validate(json.loads(rec.body)["spec"]))
        except (ValueError, KeyError):
            continue

    def body_of(name: str) -> str | None:
        rec = store.get_object("Schedule", name)
        return None if rec is None else rec.body

    ctx = Context(tz, templates, policies, body_of)
    ctx.key = context_key(seen)
    return ctx


def context_key(records: Iterable[ObjectRecord]) -> tuple[tuple[str, str, str], ...]:
    """What every armed schedule depends on, as (kind, name, content hash), sorted."""
    return tuple(
        sorted((r.kind, r.name, r.content_hash) for r in records if r.kind in _CONTEXT_KINDS)
    )


def read_applied(store: StateStore) -> Applied:
    """Arm every applied schedule: one read of the templates, Policy and Settings, one of the
    schedules' firing rows with their cursors (no body is parsed)."""
    ctx = read_context(store)
    out = Applied(context=ctx.key)
    for h in store.firing_heads():
        out.heads[h.name] = _head(h)
        armed = arm_head(h, ctx, out.broken)
        if armed is not None:
            out.armed[h.name] = armed
    return out


def arm_head(h: FiringHead, ctx: Context, broken: dict[str, str]) -> Armed | None:
    """``h`` armed with its cursor, or None (and why in ``broken``) when it cannot be."""
    try:
        a = arm(h, ctx)
    except (ValueError, KeyError, TypeError, WhenError) as e:
        broken[h.name] = str(e).splitlines()[0] if str(e) else type(e).__name__
        return None
    broken.pop(h.name, None)
    cur = h.cursor
    a.cursor = cur if cur is not None and cur.when_hash == a.when_hash else None
    return a


def arm(h: FiringHead, ctx: Context) -> Armed:
    """A schedule ready for the heap: its shape (shared by the schedules with the same firing
    row) with its trigger and cursor key."""
    spec = h.firing
    if spec is None:  # applied before the store kept firing rows
        spec = firing_spec(h.body or "")
    shape = ctx.shapes.get(spec.shape)
    if shape is None:
        shape = ctx.shapes[spec.shape] = Shape(spec, ctx)
    return Armed(
        h.name,
        shape,
        h.state or "active",
        h.state_reason,
        h.updated_at,
        h.revision,
        h.approval_hash,
    )


def last_done(a: Armed) -> datetime:
    """The instant after which ``a``'s slots still need a ledger entry."""
    return a.cursor.last_slot if a.cursor is not None else a.since


def next_fire(a: Armed) -> datetime | None:
    """The fire time of the first slot after the cursor (None: the schedule is over). An
    ``at:`` that was never fired is due at its time, also when that had passed at apply.
    Schedules with the same ``when`` and last slot share the work (the context remembers)."""
    sh = a.shape
    trigger = sh.trigger
    first_at = a.cursor is None and trigger.form == "at"
    done = last_done(a)
    key = (sh.when, None if first_at else done)
    nexts = sh.ctx.nexts
    got = nexts.get(key)
    if got is None:
        start = floor_seconds(_at_slot(a)) - 1 if first_at else floor_seconds(done)
        ts = trigger.next_seconds(start)
        nxt = None if ts is None else trigger.next_seconds(ts)
        got = (None if ts is None else instant(ts), None if nxt is None else instant(nxt))
        if len(nexts) >= _NEXTS_MAX:
            nexts.clear()
        nexts[key] = got
    slot, after = got
    if slot is None or trigger.jitter is None:
        return slot
    return fire_at(a.name, slot, trigger.jitter, after)


#: How many (``when``, last slot) answers a context remembers for :func:`next_fire`.
_NEXTS_MAX = 65536


@dataclass(frozen=True)
class Disable:
    """A schedule the firing loop turns ``disabled`` (its owner lost ``run``)."""

    schedule: str
    reason: str


def decide(
    a: Armed,
    now: datetime,
    activity: dict[str, tuple[list[RunId], list[RunId]]],
    *,
    grace: timedelta = DEFAULT_GRACE,
    plans: dict[tuple[object, ...], tuple[list[DueEntry], datetime | None]] | None = None,
) -> tuple[FireBatch | None, Disable | None]:
    """The batch that records every due slot of ``a`` at ``now`` (None: nothing is due).
    ``plans``: the due entries worked out in this pass, shared by the schedules whose entries
    differ in nothing but their name (same shape and last slot, no jitter)."""
    sh = a.shape
    key: tuple[object, ...] | None = None
    if plans is not None and sh.trigger.jitter is None:
        key = (sh.shape_key, a.cursor is None, last_done(a), a.since if a.cursor is None else None)
        got = plans.get(key)
    else:
        got = None
    if got is None:
        got = _plan(a, now, grace)
        if key is not None:
            assert plans is not None
            plans[key] = got
    entries, cursor_to = got
    if cursor_to is None:
        return None, None
    disable: Disable | None = None
    writes: list[LedgerWrite] = []
    cancel: list[RunId] = []
    unreadable = None
    if any(e.action == "run" for e in entries):
        try:
            a.run_fields  # noqa: B018 - worked out at the first due slot
        except ValueError as bad:
            unreadable = f"the applied schedule cannot be read: {str(bad).splitlines()[0]}"
    if unreadable is not None:
        entries = fold_skips(entries, "desired-state-invalid", unreadable)
    elif a.state in STATE_SKIP:
        reason, message = STATE_SKIP[a.state]
        entries = fold_skips(entries, reason, message)
    elif a.state == "disabled":
        entries = fold_skips(entries, "owner-invalid", a.state_reason or "the schedule is disabled")
    elif a.owner_problem is not None:
        first_run = next((e for e in entries if e.action == "run"), None)
        if first_run is not None:
            disable = Disable(a.name, a.owner_problem)
            why = f"not run: {a.owner_problem}; the schedule is disabled until Git fixes it"
            rest = [e for e in entries if e is not first_run]
            writes.append(LedgerWrite(first_run.slot, run=_new_run(a, first_run, "failed", why)))
            entries = fold_skips(rest, "owner-invalid", a.owner_problem)
        else:
            entries = fold_skips(entries, "owner-invalid", a.owner_problem)
    running, queued = (list(x) for x in activity.get(a.name, ([], [])))
    for e in entries:
        if e.action == "skip":
            writes.append(
                LedgerWrite(
                    e.slot, skip_reason=e.reason, detail=e.message, until=e.until, count=e.count
                )
            )
            continue
        d = decide_overlap(a.overlap, bool(running), len(queued))  # type: ignore[arg-type]
        if d.action == "skip":
            writes.append(LedgerWrite(e.slot, skip_reason="overlap", detail=d.message))
            continue
        wait_for = None
        if d.action == "queue":
            wait_for = running[-1]
        elif d.action == "cancel-and-start":
            cancel.extend(running + queued)
            running, queued = [], []
        writes.append(LedgerWrite(e.slot, run=_new_run(a, e, "queued", None, wait_for)))
        # The new run counts for the next slot of this same pass.
        if d.action == "queue":
            queued.append(RunId(-1))
        else:
            running.append(RunId(-1))
    writes.sort(key=lambda w: w.slot)
    batch = FireBatch(
        a.name,
        a.cursor.last_slot if a.cursor else None,
        cursor_to,
        a.when_hash,
        tuple(writes),
        tuple(r for r in cancel if r > 0),
    )
    return batch, disable


def _plan(a: Armed, now: datetime, grace: timedelta) -> tuple[list[DueEntry], datetime | None]:
    """The due entries of ``a`` at ``now`` and the new cursor (None: nothing is due)."""
    if a.cursor is None and a.trigger.form == "at" and _at_slot(a) <= a.since:
        slot = _at_slot(a)
        return [DueEntry(slot, slot, "run", "on-time", "its time had passed when applied")], slot
    return plan_due(
        a.trigger,
        a.name,
        last_done(a),
        now,
        a.misfire,  # type: ignore[arg-type]
        a.window,
        grace=grace,
    )


def _at_slot(a: Armed) -> datetime:
    ts = a.trigger.next_seconds(-(2**40))
    assert ts is not None
    return instant(ts)


def _new_run(
    a: Armed, e: DueEntry, status: str, message: str | None, wait_for: RunId | None = None
) -> NewRun:
    f = a.run_fields
    return NewRun(
        template=a.template,
        trigger="schedule" if e.reason == "on-time" else "catch-up",
        commit=a.commit,
        schedule=a.name,
        slot=e.slot,
        variables=f["variables"],
        sensitive=f["sensitive"],
        targets=f["targets"],
        simulate=f["simulate"],
        requested_by=None,
        provenance=a.provenance or _NO_PROVENANCE,
        message=message or (None if e.reason == "on-time" else e.message),
        wait_for=wait_for if wait_for is not None and wait_for > 0 else None,
        status="failed" if status == "failed" else "queued",
    )


_NO_PROVENANCE: dict[str, Any] = {}


def fill_provenance(
    store: StateStore, due: Sequence[Armed], signing_keys: dict[str, str | None]
) -> None:
    """Work out the provenance of the schedules in ``due`` that have none yet: one read of the
    signing keys of the revisions not in ``signing_keys`` (a cache the caller keeps), one read
    of the approvals per schedule that needs approval. Schedules with the same provenance
    share one mapping, which the store then serialises once per batch."""
    from reconciler.engine.provenance import approvers, stored_provenance

    todo = [a for a in due if a.provenance is None]
    if not todo:
        return
    missing = sorted({a.commit for a in todo if a.commit and a.commit not in signing_keys})
    if missing:
        signing_keys.update(store.signing_keys(missing))
    shared: dict[tuple[str | None, str | None, tuple[str, ...]], dict[str, Any]] = {}
    for a in todo:
        key = signing_keys.get(a.commit) if a.commit else None
        approved = approvers(store, a.name, a.approval_hash) if a.approval_hash else []
        ident = (key, a.approval_hash, tuple(approved))
        a.provenance = shared.get(ident)
        if a.provenance is None:
            a.provenance = shared[ident] = stored_provenance(key, a.approval_hash, approved)


#: Kinds every armed schedule depends on (the time zone, templates, who may run what).
_CONTEXT_KINDS = frozenset({"Settings", "JobTemplate", "Policy"})


def _head(r: ObjectRecord | FiringHead) -> int:
    """What says that an applied schedule changed: the serial of the write that last changed
    its row (every change of content, state or applied revision writes it)."""
    return r.serial


#: The interpreter's thread switch interval in the daemon (``sys.setswitchinterval``): with the
#: default 5 ms a busy worker or request thread keeps the interpreter that long while the
#: firing thread, woken at its fire time, waits for it (measured with two workers running a
#: fire every 3 ms: lateness p50 60 ms at 5 ms, 17 ms at 0.5 ms).
SWITCH_INTERVAL = 0.0005

#: How often an idle firing loop looks at the state serial, so that a change of a schedule's
#: state made by another process (an approval through the CLI or the API; the daemon pokes the
#: loop itself after its own applies) is armed within this time: one read of one row.
STATE_CHECK = timedelta(seconds=1)

#: How long before a fire time the loop wakes to decide what it will write then (reading the
#: cursors' plans, the owner checks, the overlap policy): at the fire time only the write is
#: left (or, written ahead, its commit: :data:`WRITE_COST`), after one read of the schedules'
#: runs, which decides again any schedule whose runs changed meanwhile. Covers deciding and
#: writing 1,000 schedules due at one instant (30 ms each on a slow 2-core machine) a few
#: times over.
PREPARE_AHEAD = timedelta(milliseconds=200)

#: Writing ahead (the daemon's loop): the write of a fire time begins before it, by twice the
#: time the loop's writes have been taking, and waits in its transaction, rows written, until
#: the fire time to commit. So at the fire time only the commit and the hand-over are left
#: (measured on SQLite, one fire every 3 ms: lateness p50 0.19-0.21 ms, against 0.64-0.75 ms
#: written at the fire time; 1,000 slots due at one instant: 7.5-11 ms, where their write
#: alone takes 38-43 ms). The transaction holds the write lock meanwhile: on SQLite no other
#: write (a worker's claim or lease renewal, an apply) comes between the overlap re-check and
#: the commit, so the re-check is exact. A write of ``n`` entries is reckoned to take
#: :data:`WRITE_COST` seconds times ``n`` plus :data:`WRITE_FIXED` (the cost is learnt from
#: every write; the lead is at most :data:`PREPARE_AHEAD`).
WRITE_COST = 50e-6
WRITE_FIXED = 10

#: The runs of a schedule with none running or queued.
_IDLE: tuple[list[RunId], list[RunId]] = ([], [])


@dataclass
class Prepared:
    """What the firing loop decided for the schedules due at ``at``, before writing it."""

    at: datetime
    decided: list[tuple[Armed, FireBatch, Disable | None]]
    #: the schedules' running and queued runs the decisions were made on
    activity: Activity
    #: when the decisions were ready (after ``at`` when deciding took longer than the lead)
    ready: datetime

    @functools.cached_property
    def entries(self) -> int:
        """How many ledger entries the decisions write (a re-check keeps the count)."""
        return sum(len(b.entries) for _, b, _ in self.decided)


class _Overstayed(Exception):
    """A write made ahead whose fire time did not come within its bound (the wall clock was
    stepped back meanwhile): it is rolled back, and written at the fire time instead."""


class FiringLoop:
    """The firing thread of one replica. ``on_runs`` receives the runs it queued (the daemon
    hands them to its workers at once); ``telemetry`` hears of every slot it recorded."""

    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        on_runs: Callable[[Sequence[RunRecord]], None] = lambda runs: None,
        *,
        grace: timedelta = DEFAULT_GRACE,
        telemetry: Telemetry | None = None,
        freeze_armed: bool = False,
        defer_flush: bool = False,
        prepare_ahead: timedelta = PREPARE_AHEAD,
        state_check: timedelta = STATE_CHECK,
        write_ahead: bool = False,
    ) -> None:
        if defer_flush:  # the daemon: a slot is flushed at the latest by its run's claim
            store.defer_flush()
        self.store = store
        self.clock = clock
        self.on_runs = on_runs
        self.grace = grace
        #: the wall-clock intervals of :data:`PREPARE_AHEAD` and :data:`STATE_CHECK` (a clock
        #: that runs faster than real time, as the benchmark's, scales them)
        self.prepare_ahead = prepare_ahead
        self.state_check = state_check
        self.telemetry: Telemetry = telemetry or NullTelemetry()
        #: the fire time the loop is working toward (None: nothing armed), set by the firing
        #: thread only: while a write waits (a lock, a database that is down) it stays in the
        #: past, so :meth:`behind` grows; read from other threads (``/healthz``)
        self.due_at: datetime | None = None
        self.wake = threading.Event()
        self.stopping = threading.Event()
        #: what the wait of a write made ahead waits on: nothing sets it (a stop or a poke
        #: comes after the commit, a moment later)
        self._never = threading.Event()
        self._dirty = True
        self._heap: list[tuple[datetime, str, int]] = []
        self._armed: dict[str, Armed] = {}
        self._heads: dict[str, int] = {}
        self._context: tuple[tuple[str, str, str], ...] = ()
        #: the state serial the armed schedules were read at: a change made by another
        #: process (an approval, a denial from the CLI or the API) moves it
        self._serial: int | None = None
        self._checked: datetime | None = None
        self.broken: dict[str, str] = {}
        self.fired = 0
        self.recorded = 0
        #: the signing key of each applied revision its schedules came from (provenance)
        self._signing_keys: dict[str, str | None] = {}
        #: ``freeze_armed`` (the daemon): after a full reload the armed schedules, which live
        #: as long as the process, go out of the garbage collector's sight
        self._freeze = ArmedFreeze() if freeze_armed else None
        #: the decisions for the next fire time, made :data:`PREPARE_AHEAD` before it
        self._prepared: Prepared | None = None
        #: ``write_ahead`` (the daemon's loop, on a clock that runs by itself): see
        #: :data:`WRITE_COST`; the seconds a write has been taking per entry, as learnt
        self.write_ahead = write_ahead
        self.write_cost = WRITE_COST
        #: a fire time whose write ahead overstayed: written at the fire time itself
        self._not_ahead: datetime | None = None

    # -- control from other threads

    def poke(self) -> None:
        """The applied schedules changed (an apply, a state change): re-read them."""
        self._dirty = True
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    # -- the loop

    def reload(self) -> None:
        """Re-read the applied schedules. After the first time only what changed is re-armed
        (an apply that touches a few schedules costs a read of the object heads, not of 100,000
        bodies); a change of Settings, a template or a Policy, which every schedule depends on,
        re-arms them all."""
        self._serial = self.store.serial()
        if not self._armed:  # the first time: one read of everything
            self._rearm_all()
            return
        heads = self.store.list_object_heads()
        schedules = {r.name: r for r in heads if r.kind == "Schedule"}
        if context_key(heads) != self._context:
            self._rearm_all()
            return
        self._dirty = False
        changed = [n for n, r in schedules.items() if self._heads.get(n) != _head(r)]
        gone = [n for n in self._heads if n not in schedules]
        for n in gone:
            self._armed.pop(n, None)
            self.broken.pop(n, None)
            self._heads.pop(n, None)
        if not changed:
            return
        ctx = next(iter(self._armed.values())).ctx if self._armed else read_context(self.store)
        for h in self.store.firing_heads(changed):  # one read for all the changed schedules
            n = h.name
            self._heads[n] = _head(h)
            a = arm_head(h, ctx, self.broken)
            if a is None:
                self._armed.pop(n, None)
                continue
            old = self._armed.get(n)
            if old is not None:
                a.generation = old.generation
            self._armed[n] = a
            self._push(a)

    def _state_moved(self) -> bool:
        """Whether the state serial moved since the last reload; read at most once every
        :data:`STATE_CHECK` (a loop that fires every few ms reads it rarely)."""
        now = self.clock.now()
        if self._checked is not None and now - self._checked < self.state_check:
            return False
        self._checked = now
        return self.store.serial() != self._serial

    def _rearm_all(self) -> None:
        with gc_paused():  # 100,000 long-lived objects: no collection walks them on the way
            applied = read_applied(self.store)
            self._signing_keys = {}
            self._armed, self.broken = applied.armed, applied.broken
            self._heads, self._context = applied.heads, applied.context
            heap = []
            for a in self._armed.values():  # one heapify, not 100,000 pushes
                a.generation += 1
                a.next_fire = next_fire(a)
                if a.next_fire is not None:
                    heap.append((a.next_fire, a.name, a.generation))
            heapq.heapify(heap)
            self._heap = heap
            self._dirty = False
        if self._freeze is not None:
            self._freeze.after_rearm()

    def _push(self, a: Armed) -> None:
        a.generation += 1
        a.next_fire = next_fire(a)
        if a.next_fire is not None:
            heapq.heappush(self._heap, (a.next_fire, a.name, a.generation))

    def next_deadline(self) -> datetime | None:
        while self._heap:
            at, name, gen = self._heap[0]
            a = self._armed.get(name)
            if a is None or a.generation != gen:
                heapq.heappop(self._heap)
                continue
            return at
        return None

    def tick(self, now: datetime) -> list[RunRecord]:
        """Record every slot due at ``now``; returns the runs queued."""
        prep = self._prepare(now)
        if prep is None:
            return []
        return self._fire_prepared(prep, now, fresh=True)

    def _prepare(self, upto: datetime) -> Prepared | None:
        """Take every schedule due at ``upto`` out of the heap and decide its entries as of
        ``upto``: what :meth:`_fire_prepared` then writes (None: nothing is due)."""
        due: list[Armed] = []
        while True:
            at = self.next_deadline()
            if at is None or at > upto:
                break
            _, name, _ = heapq.heappop(self._heap)
            due.append(self._armed[name])
        if not due:
            return None
        try:
            with gc_paused():  # a burst or a recovery allocates its runs by the thousand
                activity = self.store.schedule_activity([a.name for a in due])
                fill_provenance(self.store, due, self._signing_keys)
                plans: dict[tuple[object, ...], tuple[list[DueEntry], datetime | None]] = {}
                decided: list[tuple[Armed, FireBatch, Disable | None]] = []
                for a in due:
                    batch, disable = decide(a, upto, activity, grace=self.grace, plans=plans)
                    if batch is None:
                        self._push(a)
                    else:
                        decided.append((a, batch, disable))
        except BaseException:
            for a in due:  # nothing was decided: these schedules are still due
                self._push(a)
            raise
        return Prepared(upto, decided, activity, self.clock.now()) if decided else None

    def _drop_prepared(self) -> None:
        """Forget what was prepared (the applied schedules changed): its schedules go back to
        the heap, unless a reload replaced them."""
        prep, self._prepared = self._prepared, None
        if prep is not None:
            for a, _, _ in prep.decided:
                if self._armed.get(a.name) is a:
                    self._push(a)

    def _write_at(self, prep: Prepared) -> datetime:
        """When to begin the write of ``prep`` (see :data:`WRITE_COST`)."""
        if not self.write_ahead or prep.at == self._not_ahead:
            return prep.at
        lead = 2 * self.write_cost * (prep.entries + WRITE_FIXED)
        return prep.at - min(timedelta(seconds=lead), self.prepare_ahead)

    def _learn(self, prep: Prepared, spent: float) -> None:
        """A write of ``prep`` took ``spent`` seconds (on the loop's clock), its wait excepted."""
        per_entry = spent / (prep.entries + WRITE_FIXED)
        self.write_cost = 0.7 * self.write_cost + 0.3 * per_entry

    def _hold(self, prep: Prepared, began: float) -> Callable[[], None]:
        """The wait of a write begun ahead (at monotonic ``began``): until ``prep.at``, in the
        write's transaction. Raises :class:`_Overstayed` when the fire time has not come twice
        :data:`PREPARE_AHEAD` after the write began."""

        def hold() -> None:
            clock = self.clock
            start = clock.monotonic()
            self._learn(prep, start - began)
            give_up = start + 2 * self.prepare_ahead.total_seconds()
            clock.sleep_until(prep.at, self._never, give_up=give_up)
            if clock.now() < prep.at:
                raise _Overstayed

        return hold

    def _fire_prepared(self, prep: Prepared, now: datetime, *, fresh: bool) -> list[RunRecord]:
        """Record what :meth:`_prepare` decided. Unless the decisions are ``fresh`` (made a
        moment ago), the write's transaction reads the runs of their schedules first: a
        schedule whose running or queued runs changed since is decided again (the overlap
        policy acts on the runs at the fire time). Before ``prep.at`` (a write ahead), the
        rows are stamped ``prep.at`` and committed at that instant."""
        decided = prep.decided
        if not fresh and now - max(prep.at, prep.ready) > self.prepare_ahead:
            # fired late (a stall, a suspended process, the wall clock stepped forward): the
            # misfire policy judges the slots at the time they are recorded, so decide again
            for a, _, _ in decided:
                self._push(a)
            return self.tick(now)
        recheck = None
        if not fresh:

            def recheck(activity: Activity) -> list[FireBatch]:
                # in the write's transaction (see _redecide)
                nonlocal decided
                decided = self._redecide(prep, activity)
                return [b for _, b, _ in decided]

        hold = None
        began = self.clock.monotonic()
        if now < prep.at:
            hold = self._hold(prep, began)
            now = prep.at
        try:
            with gc_paused():
                batches = [b for _, b, _ in decided]
                results = self.store.record_fires(batches, now, recheck, hold)
                if hold is None and self.write_ahead:
                    self._learn(prep, self.clock.monotonic() - began)
                return self._recorded(decided, results, now)
        except _Overstayed:
            log.warning(
                "the wall clock went back while the slots due at %s (%d schedules) waited to "
                "commit: nothing was recorded; they are recorded at that time instead",
                prep.at.isoformat(),
                len(prep.decided),
            )
            self._not_ahead = prep.at
            for a, _, _ in prep.decided:  # rolled back: due again, written at their time
                self._push(a)
            return []
        except BaseException:
            # nothing was recorded (one transaction): these schedules are still due, and must
            # be back in the heap when the state is reachable again
            for a, _, _ in prep.decided:
                self._push(a)
            raise

    def _redecide(
        self, prep: Prepared, activity: Activity
    ) -> list[tuple[Armed, FireBatch, Disable | None]]:
        """``prep``'s decisions, with those of the schedules whose running or queued runs
        are no longer those it was decided on decided again (the overlap policy acts on the
        runs at the fire time)."""
        out: list[tuple[Armed, FireBatch, Disable | None]] = []
        for a, batch, disable in prep.decided:
            if activity.get(a.name, _IDLE) != prep.activity.get(a.name, _IDLE):
                again, disable = decide(a, prep.at, activity, grace=self.grace)
                assert again is not None  # the same entries as before: only overlap moved
                batch = again
            out.append((a, batch, disable))
        return out

    def _recorded(
        self,
        decided: Sequence[tuple[Armed, FireBatch, Disable | None]],
        results: Sequence[FireResult],
        now: datetime,
    ) -> list[RunRecord]:
        """After the write of ``decided``: hand the runs over, re-arm, notify."""
        batches = [b for _, b, _ in decided]
        disables = [d for _, _, d in decided if d is not None]
        by_name = {a.name: a for a, _, _ in decided}
        runs: list[RunRecord] = []
        for res in results:
            if res.ok:
                runs.extend(r for r in res.runs if r.status == "queued")
        self.fired += len(runs)
        if runs:  # the workers first: re-arming and notifications come after the hand-over
            self.on_runs(runs)
        if results and not isinstance(self.telemetry, NullTelemetry):
            self._report(batches, results, by_name)
        conflicts: list[Armed] = []
        for batch, res in zip(batches, results, strict=True):
            a = by_name[batch.schedule]
            if res.ok:
                a.cursor = Cursor(a.name, batch.new_cursor, a.when_hash)
                self.recorded += sum(w.count for w in batch.entries)
                self._push(a)
            else:
                conflicts.append(a)
        for d in disables:
            try:
                self.store.set_object_state("Schedule", d.schedule, "disabled", d.reason, now)
            except StateError as e:
                log.warning("could not disable schedule %s: %s", d.schedule, e)
            self._dirty = True
        self._notify(batches, results, disables, now)
        if conflicts:  # another replica fired these: take its cursors and go on from there
            cursors = self.store.fire_cursors()
            for a in conflicts:
                cur = cursors.get(a.name)
                a.cursor = cur if cur is not None and cur.when_hash == a.when_hash else None
                self._push(a)
        return runs

    def _notify(
        self,
        batches: Sequence[FireBatch],
        results: Sequence[FireResult],
        disables: Sequence[Disable],
        now: datetime,
    ) -> None:
        """Missed slots and disabled schedules notify (see engine/notifying.py)."""
        from reconciler.engine.notifying import notify_fired

        notify_fired(self.store, batches, results, disables, now)

    def _report(
        self,
        batches: Sequence[FireBatch],
        results: Sequence[FireResult],
        by_name: dict[str, Armed],
    ) -> None:
        """Tell the telemetry what was recorded (before the schedules are re-armed: their
        ``next_fire`` is still the fire time that was due)."""
        committed = self.clock.now()
        counts: dict[tuple[str, str, str | None], int] = {}
        for batch, res in zip(batches, results, strict=True):
            if not res.ok:
                continue
            # what this replica's transaction wrote, not what it asked for: a slot another
            # replica recorded first is counted there
            if res.runs:
                ran: tuple[str, str, str | None] = (batch.schedule, "run", None)
                counts[ran] = counts.get(ran, 0) + len(res.runs)
            for why, n in res.skipped:
                skip: tuple[str, str, str | None] = (batch.schedule, "skipped", why)
                counts[skip] = counts.get(skip, 0) + n
            due = by_name[batch.schedule].next_fire
            if due is not None:
                self.telemetry.fire_lag((committed - due).total_seconds())
            for r in res.runs:
                if r.status != "queued":  # recorded final at once (its owner lost run)
                    self.telemetry.run_finished(r.template, r.status, None)
        for (schedule, outcome, reason), n in counts.items():
            self.telemetry.slot(schedule, outcome, reason, n)

    def behind(self, now: datetime) -> float | None:
        """Seconds the loop is behind the fire time it works toward (None: nothing armed)."""
        due = self.due_at
        return None if due is None else max(0.0, (now - due).total_seconds())

    def step(self) -> list[RunRecord]:
        """One wake of the loop: re-read the state when asked, then fire what is due."""
        if self._dirty:
            self.reload()
        return self.tick(self.clock.now())

    def run_forever(self, on_error: Callable[[Exception], None]) -> None:
        """Sleep until the next fire time (or a poke), fire, repeat, until :meth:`stop`.
        :data:`PREPARE_AHEAD` before a fire time the loop wakes to decide what is due then,
        and sleeps again until the fire time itself, when only the write is left."""
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                if self._dirty:
                    self._drop_prepared()
                    self.reload()
                prep = self._prepared
                now = self.clock.now()
                if prep is None:
                    deadline = self.due_at = self.next_deadline()
                    if deadline is not None and deadline <= now:
                        # due already (a start, a recovery, a loop behind): decide and write
                        if self._state_moved():
                            self._dirty = True
                            continue
                        self.tick(now)
                        backoff = 0.5
                        continue
                    if deadline is not None and deadline - now <= self.prepare_ahead:
                        self._prepared = self._prepare(deadline)
                        continue
                    until = None if deadline is None else deadline - self.prepare_ahead
                else:
                    self.due_at = prep.at
                    until = self._write_at(prep)
                check = now + self.state_check
                if until is None or until > check:
                    until = check
                self.clock.sleep_until(until, self.wake)
                self.wake.clear()
                if self.stopping.is_set():
                    break
                if self._dirty or self._state_moved():
                    self._dirty = True  # re-read at the top, after what was prepared is dropped
                    continue
                now = self.clock.now()
                if prep is not None and now >= self._write_at(prep):
                    self._prepared = None
                    self._fire_prepared(prep, now, fresh=False)
                backoff = 0.5
            except StateError as e:
                on_error(e)
                self._dirty = True
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
