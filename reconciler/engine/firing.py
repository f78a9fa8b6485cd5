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

Where a schedule starts counting: its cursor when it has one under the same ``when``; else the
instant its current ``when`` was applied. An ``at:`` time already past when it was applied runs
once, right away (the contract), whatever the misfire policy says.
"""

from __future__ import annotations

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
from reconciler.errors import StateError
from reconciler.model.documents import JobTemplate, Schedule, Settings
from reconciler.model.policy import PolicySpec, matches
from reconciler.model.variables import resolve
from reconciler.planning.plan import SETTINGS_NAME
from reconciler.scheduling import Trigger, WhenError, build_trigger, decide_overlap
from reconciler.scheduling.jitter import fire_at
from reconciler.scheduling.slots import DEFAULT_GRACE, DueEntry, fold_skips, plan_due
from reconciler.scheduling.zones import floor_seconds, instant
from reconciler.stores.base import (
    Cursor,
    FireBatch,
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


@dataclass
class Armed:
    """One applied schedule as the firing loop holds it."""

    name: str
    template: str
    state: str
    state_reason: str | None
    trigger: Trigger
    when_hash: str
    misfire: str
    window: timedelta
    overlap: str
    since: datetime
    """Slots after this instant count when the schedule has no cursor (its ``when`` applied)."""
    run_fields: dict[str, Any]
    """NewRun fields common to every slot: variables, sensitive names, targets, simulate."""
    owner_problem: str | None
    commit: str | None
    cursor: Cursor | None = None
    next_fire: datetime | None = None
    generation: int = 0


@dataclass
class Applied:
    """What the firing loop read from the state: armed schedules and the ones it could not arm."""

    armed: dict[str, Armed] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)


def when_hash(spec_when: Any, timezone: str) -> str:
    text = json.dumps(spec_when, sort_keys=True, separators=(",", ":")) + "\x00" + timezone
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def owner_problem(owner: str, template: str, policies: Iterable[PolicySpec]) -> str | None:
    """Why ``owner`` may not run ``template`` under the applied Policy, or None."""
    pols = list(policies)
    users = {u.name: u for p in pols for u in p.users}
    user = users.get(owner)
    if user is None:
        return f'its owner "{owner}" is not a Policy user any more'
    for p in pols:
        for perm in p.permissions:
            if perm.applies_to(user) and matches(perm.run, template):
                return None
    return f'its owner "{owner}" no longer holds run on template "{template}"'


def read_applied(store: StateStore) -> Applied:
    """Arm every applied schedule (one read of the schedules, templates, Policy, Settings)."""
    settings = store.get_object("Settings", SETTINGS_NAME)
    tz = Settings.model_validate_json(settings.body).spec.timezone if settings else "UTC"
    templates: dict[str, JobTemplate] = {}
    for rec in store.list_objects("JobTemplate"):
        try:
            templates[rec.name] = JobTemplate.model_validate_json(rec.body)
        except ValueError:
            continue
    policies = []
    for rec in store.list_objects("Policy"):
        try:
            policies.append(json.loads(rec.body)["spec"])
        except (ValueError, KeyError):
            continue
    pol_specs = [PolicySpec.model_validate(p) for p in policies]
    cursors = store.fire_cursors()
    triggers: dict[str, Trigger] = {}
    out = Applied()
    for rec in store.list_objects("Schedule"):
        try:
            armed = _arm(rec, tz, templates, pol_specs, triggers)
        except (ValueError, WhenError) as e:
            out.broken[rec.name] = str(e).splitlines()[0]
            continue
        cur = cursors.get(rec.name)
        armed.cursor = cur if cur is not None and cur.when_hash == armed.when_hash else None
        out.armed[rec.name] = armed
    return out


def _arm(
    rec: ObjectRecord,
    tz: str,
    templates: dict[str, JobTemplate],
    policies: list[PolicySpec],
    triggers: dict[str, Trigger],
) -> Armed:
    sched = Schedule.model_validate_json(rec.body)
    spec = sched.spec
    zone = spec.when.timezone or tz
    raw_when = json.loads(rec.body)["spec"]["when"]
    wh = when_hash(raw_when, zone)
    trigger = triggers.get(wh)
    if trigger is None:
        trigger = triggers[wh] = build_trigger(spec.when, tz)
    template = templates.get(spec.template)
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
    problem = owner_problem(spec.owner, spec.template, policies)
    if template is None:
        problem = f'its template "{spec.template}" is not applied'
    return Armed(
        name=rec.name,
        template=spec.template,
        state=rec.state or "active",
        state_reason=rec.state_reason,
        trigger=trigger,
        when_hash=wh,
        misfire=spec.misfire.policy,
        window=spec.misfire.window,
        overlap=spec.overlap,
        since=rec.updated_at,
        run_fields=fields,
        owner_problem=problem,
        commit=rec.revision,
    )


def last_done(a: Armed) -> datetime:
    """The instant after which ``a``'s slots still need a ledger entry."""
    return a.cursor.last_slot if a.cursor is not None else a.since


def next_fire(a: Armed) -> datetime | None:
    """The fire time of the first slot after the cursor (None: the schedule is over). An
    ``at:`` that was never fired is due at its time, also when that had passed at apply."""
    if a.cursor is None and a.trigger.form == "at":
        ts: int | None = floor_seconds(_at_slot(a)) - 1
    else:
        ts = floor_seconds(last_done(a))
    assert ts is not None
    ts = a.trigger.next_seconds(ts)
    if ts is None:
        return None
    nxt = a.trigger.next_seconds(ts)
    return fire_at(a.name, instant(ts), a.trigger.jitter, None if nxt is None else instant(nxt))


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
) -> tuple[FireBatch | None, Disable | None]:
    """The batch that records every due slot of ``a`` at ``now`` (None: nothing is due)."""
    start = last_done(a)
    at_past = a.cursor is None and a.trigger.form == "at" and _at_slot(a) <= a.since
    if at_past:
        slot = _at_slot(a)
        entries = [DueEntry(slot, slot, "run", "on-time", "its time had passed when applied")]
        cursor_to: datetime | None = slot
    else:
        entries, cursor_to = plan_due(
            a.trigger,
            a.name,
            start,
            now,
            a.misfire,  # type: ignore[arg-type]
            a.window,
            grace=grace,
        )
    if cursor_to is None:
        return None, None
    disable: Disable | None = None
    writes: list[LedgerWrite] = []
    cancel: list[RunId] = []
    if a.state in STATE_SKIP:
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
        message=message or (None if e.reason == "on-time" else e.message),
        wait_for=wait_for if wait_for is not None and wait_for > 0 else None,
        status="failed" if status == "failed" else "queued",
    )


class FiringLoop:
    """The firing thread of one replica. ``on_runs`` receives the runs it queued (the daemon
    hands them to its workers at once)."""

    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        on_runs: Callable[[Sequence[RunRecord]], None] = lambda runs: None,
        *,
        grace: timedelta = DEFAULT_GRACE,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_runs = on_runs
        self.grace = grace
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._dirty = True
        self._heap: list[tuple[datetime, str, int]] = []
        self._armed: dict[str, Armed] = {}
        self.broken: dict[str, str] = {}
        self.fired = 0
        self.recorded = 0

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
        applied = read_applied(self.store)
        self._armed = applied.armed
        self.broken = applied.broken
        self._heap = []
        for a in self._armed.values():
            self._push(a)
        self._dirty = False

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
        due: list[Armed] = []
        while True:
            at = self.next_deadline()
            if at is None or at > now:
                break
            _, name, _ = heapq.heappop(self._heap)
            due.append(self._armed[name])
        if not due:
            return []
        activity = self.store.schedule_activity([a.name for a in due])
        batches: list[FireBatch] = []
        disables: list[Disable] = []
        by_name: dict[str, Armed] = {}
        for a in due:
            batch, disable = decide(a, now, activity, grace=self.grace)
            if batch is None:
                self._push(a)
                continue
            batches.append(batch)
            by_name[a.name] = a
            if disable is not None:
                disables.append(disable)
        results = self.store.record_fires(batches, now) if batches else []
        runs: list[RunRecord] = []
        conflicts = False
        for batch, res in zip(batches, results, strict=True):
            a = by_name[batch.schedule]
            if res.ok:
                a.cursor = Cursor(a.name, batch.new_cursor, a.when_hash)
                runs.extend(r for r in res.runs if r.status == "queued")
                self.recorded += sum(w.count for w in batch.entries)
                self._push(a)
            else:
                conflicts = True
        for d in disables:
            try:
                self.store.set_object_state("Schedule", d.schedule, "disabled", d.reason, now)
            except StateError as e:
                log.warning("could not disable schedule %s: %s", d.schedule, e)
            self._dirty = True
        if conflicts:  # another replica fired these: take its cursors
            self._dirty = True
        self.fired += len(runs)
        if runs:
            self.on_runs(runs)
        return runs

    def step(self) -> list[RunRecord]:
        """One wake of the loop: re-read the state when asked, then fire what is due."""
        if self._dirty:
            self.reload()
        return self.tick(self.clock.now())

    def run_forever(self, on_error: Callable[[Exception], None]) -> None:
        """Sleep until the next fire time (or a poke), fire, repeat, until :meth:`stop`."""
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                if self._dirty:
                    self.reload()
                deadline = self.next_deadline()
                if deadline is None:
                    deadline = self.clock.now() + timedelta(seconds=60)
                self.clock.sleep_until(deadline, self.wake)
                self.wake.clear()
                if self.stopping.is_set():
                    break
                if self._dirty:
                    self.reload()
                self.tick(self.clock.now())
                backoff = 0.5
            except StateError as e:
                on_error(e)
                self._dirty = True
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
