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


class Context:
    """What arming needs besides a schedule's own body, read once per reload: the default time
    zone, the templates, who may run what (the applied Policy), caches shared by schedules."""

    def __init__(
        self, tz: str, templates: dict[str, JobTemplate], policies: list[PolicySpec]
    ) -> None:
        self.tz = tz
        self.templates = templates
        self.users = {u.name: u for p in policies for u in p.users}
        self.permissions = [perm for p in policies for perm in p.permissions]
        self.triggers: dict[str, Trigger] = {}
        self._owners: dict[tuple[str, str], str | None] = {}
        self._windows: dict[str, timedelta] = {}
        #: run fields by what they depend on (template, variables, targets, mode): schedules
        #: that differ only in their name and ``when`` share one validation and resolution
        self.fields: dict[str, dict[str, Any]] = {}
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


class Armed:
    """One applied schedule as the firing loop holds it. Arming is cheap (the body's JSON, a
    shared trigger, the next fire time); the rest (the validated document, variables, owner
    check) is worked out when the schedule first has a due slot."""

    __slots__ = (
        "_fields",
        "_owner",
        "body",
        "commit",
        "ctx",
        "cursor",
        "generation",
        "misfire",
        "name",
        "next_fire",
        "overlap",
        "owner",
        "since",
        "state",
        "state_reason",
        "template",
        "trigger",
        "when_hash",
        "window_text",
    )

    def __init__(
        self,
        name: str,
        spec: dict[str, Any],
        body: str,
        state: str,
        state_reason: str | None,
        trigger: Trigger,
        when_hash: str,
        since: datetime,
        commit: str | None,
        ctx: Context,
    ) -> None:
        # only a few short fields and the body's text are kept: 100,000 armed schedules must
        # fit in a few hundred MB (a parsed body costs several times its text)
        self.name, self.body, self.state, self.state_reason = name, body, state, state_reason
        self.trigger, self.when_hash, self.since, self.commit = trigger, when_hash, since, commit
        self.ctx = ctx
        self.template = str(spec.get("template", ""))
        self.owner = str(spec.get("owner", ""))
        misfire = spec.get("misfire") or {}
        self.misfire = str(misfire.get("policy", "once"))
        self.window_text = misfire.get("window")
        self.overlap = str(spec.get("overlap", "skip"))
        self.cursor: Cursor | None = None
        self.next_fire: datetime | None = None
        self.generation = 0
        self._fields: dict[str, Any] | None = None
        self._owner: tuple[str | None] | None = None

    @property
    def window(self) -> timedelta:
        return self.ctx.window(self.window_text)

    @property
    def owner_problem(self) -> str | None:
        if self._owner is None:
            self._owner = (self.ctx.owner_problem(self.owner, self.template),)
        return self._owner[0]

    @property
    def run_fields(self) -> dict[str, Any]:
        """NewRun fields common to every slot: variables, sensitive names, targets, simulate."""
        if self._fields is None:
            self._fields = _run_fields(self)
        return self._fields


def _run_fields(a: Armed) -> dict[str, Any]:
    raw = json.loads(a.body)["spec"]
    key = json.dumps(
        [raw.get(k) for k in ("template", "variables", "targets", "mode")],
        sort_keys=True,
        separators=(",", ":"),
    )
    cached = a.ctx.fields.get(key)
    if cached is not None:
        return cached
    fields = _resolve_fields(a)
    a.ctx.fields[key] = fields
    return fields


def _resolve_fields(a: Armed) -> dict[str, Any]:
    spec = Schedule.model_validate_json(a.body).spec
    template = a.ctx.templates.get(spec.template)
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
    heads: dict[str, tuple[object, ...]] = field(default_factory=dict)
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
    ctx = Context(tz, templates, policies)
    ctx.key = context_key(seen)
    return ctx


def context_key(records: Iterable[ObjectRecord]) -> tuple[tuple[str, str, str], ...]:
    """What every armed schedule depends on, as (kind, name, content hash), sorted."""
    return tuple(
        sorted((r.kind, r.name, r.content_hash) for r in records if r.kind in _CONTEXT_KINDS)
    )


def read_applied(store: StateStore) -> Applied:
    """Arm every applied schedule (one read of the schedules, templates, Policy, Settings)."""
    ctx = read_context(store)
    cursors = store.fire_cursors()
    out = Applied(context=ctx.key)
    for rec in store.list_objects("Schedule"):
        out.heads[rec.name] = _head(rec)
        try:
            armed = arm(rec, ctx)
        except (ValueError, KeyError, TypeError, WhenError) as e:
            out.broken[rec.name] = str(e).splitlines()[0] if str(e) else type(e).__name__
            continue
        cur = cursors.get(rec.name)
        armed.cursor = cur if cur is not None and cur.when_hash == armed.when_hash else None
        out.armed[rec.name] = armed
    return out


def arm(rec: ObjectRecord, ctx: Context) -> Armed:
    """A schedule ready for the heap: its trigger (shared by schedules with the same ``when``
    and zone) and its cursor key."""
    spec = json.loads(rec.body)["spec"]
    raw_when = spec["when"]
    zone = raw_when.get("timezone") or ctx.tz
    # the cursor's key: what the slots depend on (the ``when`` and its zone)
    key = json.dumps(raw_when, sort_keys=True, separators=(",", ":")) + "\x00" + zone
    trigger = ctx.triggers.get(key)
    if trigger is None:
        from reconciler.model.schedule import When

        trigger = ctx.triggers[key] = build_trigger(When.model_validate(raw_when), ctx.tz)
    wh = hashlib.sha256(key.encode()).hexdigest()[:32]
    return Armed(
        rec.name,
        spec,
        rec.body,
        rec.state or "active",
        rec.state_reason,
        trigger,
        wh,
        rec.updated_at,
        rec.revision,
        ctx,
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


#: Kinds every armed schedule depends on (the time zone, templates, who may run what).
_CONTEXT_KINDS = frozenset({"Settings", "JobTemplate", "Policy"})


def _head(r: ObjectRecord) -> tuple[object, ...]:
    """What says that an applied schedule changed: its content, state and applied revision."""
    return (r.content_hash, r.state, r.state_reason, r.revision, r.updated_at)


#: How often an idle firing loop looks at the state serial, so that a change of a schedule's
#: state made by another process (an approval through the CLI or the API; the daemon pokes the
#: loop itself after its own applies) is armed within this time: one read of one row.
STATE_CHECK_SECONDS = 1.0


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
        self._heads: dict[str, tuple[object, ...]] = {}
        self._context: tuple[tuple[str, str, str], ...] = ()
        #: the state serial the armed schedules were read at: a change made by another
        #: process (an approval, a denial from the CLI or the API) moves it
        self._serial: int | None = None
        self._checked: datetime | None = None
        self.broken: dict[str, str] = {}
        self.fired = 0
        self.recorded = 0
        #: called after a full reload (the daemon freezes the garbage collector's view of the
        #: armed schedules, so collections stop walking them)
        self.after_reload: Callable[[], None] | None = None

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
        cursors = self.store.fire_cursors()  # once for all the changed schedules
        for n in changed:
            rec = self.store.get_object("Schedule", n)
            if rec is None:
                continue
            self._heads[n] = _head(rec)
            try:
                a = arm(rec, ctx)
            except (ValueError, KeyError, TypeError, WhenError) as e:
                self._armed.pop(n, None)
                self.broken[n] = str(e).splitlines()[0] if str(e) else type(e).__name__
                continue
            self.broken.pop(n, None)
            cur = cursors.get(n)
            a.cursor = cur if cur is not None and cur.when_hash == a.when_hash else None
            old = self._armed.get(n)
            if old is not None:
                a.generation = old.generation
            self._armed[n] = a
            self._push(a)

    def _state_moved(self) -> bool:
        """Whether the state serial moved since the last reload; read at most once every
        :data:`STATE_CHECK_SECONDS` (a loop that fires every few ms reads it rarely)."""
        now = self.clock.now()
        if self._checked is not None and now - self._checked < timedelta(
            seconds=STATE_CHECK_SECONDS
        ):
            return False
        self._checked = now
        return self.store.serial() != self._serial

    def _rearm_all(self) -> None:
        applied = read_applied(self.store)
        self._armed, self.broken = applied.armed, applied.broken
        self._heads, self._context = applied.heads, applied.context
        self._heap = []
        for a in self._armed.values():
            self._push(a)
        self._dirty = False
        if self.after_reload is not None:
            self.after_reload()

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
        try:
            return self._fire(due, now)
        except BaseException:
            # nothing was recorded (one transaction): these schedules are still due, and must
            # be back in the heap when the state is reachable again
            for a in due:
                self._push(a)
            raise

    def _fire(self, due: list[Armed], now: datetime) -> list[RunRecord]:
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
        conflicts: list[Armed] = []
        for batch, res in zip(batches, results, strict=True):
            a = by_name[batch.schedule]
            if res.ok:
                a.cursor = Cursor(a.name, batch.new_cursor, a.when_hash)
                runs.extend(r for r in res.runs if r.status == "queued")
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
        if conflicts:  # another replica fired these: take its cursors and go on from there
            cursors = self.store.fire_cursors()
            for a in conflicts:
                cur = cursors.get(a.name)
                a.cursor = cur if cur is not None and cur.when_hash == a.when_hash else None
                self._push(a)
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
                check = self.clock.now() + timedelta(seconds=STATE_CHECK_SECONDS)
                if deadline is None or deadline > check:
                    deadline = check
                self.clock.sleep_until(deadline, self.wake)
                self.wake.clear()
                if self.stopping.is_set():
                    break
                if self._dirty or self._state_moved():
                    self.reload()
                self.tick(self.clock.now())
                backoff = 0.5
            except StateError as e:
                on_error(e)
                self._dirty = True
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
