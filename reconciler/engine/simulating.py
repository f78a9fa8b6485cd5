"""Simulating: the slot ledger the daemon's firing code would write over a range of time.

Who calls it: ``reconciler simulate`` (:mod:`reconciler.cli.simulate`) and the tests, which use
it as the oracle of the firing loop. Not pure: it writes a throwaway SQLite state in a temporary
directory and removes it; it never opens the user's state, never reads the clock and never
executes a run.

How (:func:`simulate`): the desired state is applied to a fresh state at ``start``, as
``reconciler apply`` would at that instant; then the daemon's own
:class:`~reconciler.engine.firing.FiringLoop` (``read_applied``, ``decide``, the store's
``record_fires``) is driven by a :class:`~reconciler.clock.ManualClock` that jumps to each next
deadline, exactly where the daemon's firing thread sleeps until. Only the workers are stood in
for, with the store's own methods (``claim_next_run``, ``heartbeat``, ``record_outcome``), so
that the overlap policies see the runs they would see:

* a run is claimed as soon as it may start (a worker is always free: the simulation has no
  worker limit), is ``running`` for ``run_time`` and is then recorded ``succeeded``; past its
  template's ``timeout`` it is recorded ``timed-out`` at the timeout instead. A run that waits
  for another (``overlap: queue``) starts when that one ends. A cancel asked by ``overlap:
  cancel`` is seen at once (a real worker's heartbeat sees it within two seconds);
* at one instant, runs that end are recorded first, then waiting runs start, then the slots
  due fire (and the runs they queue start): a run that takes exactly one interval has ended
  when the next slot fires;
* an :class:`Outage` is ``serve`` not running: it stops at ``start`` as on SIGTERM (no slot
  fires, nothing is claimed; running runs may finish within :data:`DRAIN_GRACE`, the rest are
  ``cancelled`` then) and a new loop starts at ``end``, as after a restart, so the misfire
  policy applies to what it missed.

The work is bounded: a range that holds more than ``limit`` slots (each slot ends in at most
one ledger entry) is refused before anything is fired, with :class:`SimulationTooLarge`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.clock import ManualClock
from reconciler.engine.firing import Applied, FiringLoop, read_applied
from reconciler.engine.ledger import entry_json
from reconciler.errors import UsageError
from reconciler.model.desired import DesiredState
from reconciler.model.documents import JobTemplate
from reconciler.scheduling.jitter import fire_at
from reconciler.scheduling.slots import DEFAULT_GRACE
from reconciler.scheduling.zones import Zone, floor_seconds, instant
from reconciler.stores.base import (
    RunId,
    RunStatus,
    SlotEntry,
    StateStore,
)
from reconciler.stores.opening import open_store

#: The most slots a simulation covers (a bound on its ledger entries and on its work).
MAX_SLOTS = 100_000

#: How long running runs may go on when ``serve`` stops (``serve --grace``, its default).
DRAIN_GRACE = timedelta(seconds=30)

#: The window of fire times the apply's plan compares (as the daemon's own apply).
_HORIZON = timedelta(days=7)

#: Where the throwaway state goes when the machine has a memory file system (no durability is
#: needed, and a commit there costs microseconds instead of an fsync).
_SCRATCH = Path("/dev/shm")


class SimulationTooLarge(UsageError):
    """The range holds more slots than a simulation covers."""


@dataclass(frozen=True)
class Outage:
    """``serve`` is not running from ``start`` (included) to ``end`` (excluded)."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class SimRun:
    """What became of a slot's run in the simulation."""

    id: RunId
    trigger: str
    """``schedule`` or ``catch-up``."""
    status: str
    """``succeeded``, ``timed-out``, ``cancelled``, ``failed``; ``queued`` or ``running`` when
    the range ended first."""
    started_at: datetime | None
    finished_at: datetime | None
    message: str | None


@dataclass(frozen=True, slots=True)
class SimEntry:
    """One ledger entry of the simulation, with what became of its run."""

    entry: SlotEntry
    fire_at: datetime
    local_fire_at: datetime
    """``fire_at`` in the schedule's time zone (where DST moves show)."""
    run: SimRun | None


@dataclass(frozen=True)
class Transition:
    """A UTC offset change of a schedule's time zone inside the range (DST)."""

    timezone: str
    at: datetime
    """The first instant with the new offset, in that zone."""
    offset_before: timedelta
    offset_after: timedelta


@dataclass
class Simulation:
    """What :func:`simulate` found: the ledger, oldest slot first (ties by schedule name)."""

    start: datetime
    end: datetime
    outages: tuple[Outage, ...]
    run_time: timedelta
    entries: list[SimEntry] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    unarmed: dict[str, str] = field(default_factory=dict)
    """Applied schedules the firing loop could not arm, and why."""


def check_range(start: datetime, end: datetime, outages: Sequence[Outage]) -> tuple[Outage, ...]:
    """The outages sorted; raises :class:`UsageError` for a range or outage that makes no
    sense (naive instants, an empty range, an outage outside it or overlapping another)."""
    for t in (start, end, *(x for o in outages for x in (o.start, o.end))):
        if t.tzinfo is None or t.utcoffset() is None:
            raise UsageError(f"{t.isoformat()} has no UTC offset: write it with Z or +01:00")
    if end <= start:
        raise UsageError(f"--to {end.isoformat()} is not after --from {start.isoformat()}")
    ordered = tuple(sorted(outages, key=lambda o: o.start))
    previous: Outage | None = None
    for o in ordered:
        shown = f"--down {o.start.isoformat()}/{o.end.isoformat()}"
        if o.end <= o.start:
            raise UsageError(f"{shown}: its end is not after its start")
        if o.start < start or o.end > end:
            raise UsageError(f"{shown} is not inside --from .. --to")
        if previous is not None and o.start < previous.end:
            raise UsageError(
                f"{shown} overlaps --down {previous.start.isoformat()}/{previous.end.isoformat()}"
            )
        previous = o
    return ordered


def simulate(
    desired: DesiredState,
    start: datetime,
    end: datetime,
    outages: Sequence[Outage] = (),
    run_time: timedelta = timedelta(0),
    *,
    limit: int = MAX_SLOTS,
    grace: timedelta = DEFAULT_GRACE,
) -> Simulation:
    """The ledger of ``desired`` applied at ``start`` and fired until ``end`` (see the module
    docstring). Raises :class:`UsageError` for a bad range, :class:`SimulationTooLarge`."""
    ordered = check_range(start, end, outages)
    if run_time < timedelta(0):
        raise UsageError("--run-time cannot be negative")
    from reconciler.engine.planning import apply_plan, plan_against_state

    scratch = str(_SCRATCH) if _SCRATCH.is_dir() and _writable(_SCRATCH) else None
    with tempfile.TemporaryDirectory(prefix="reconciler-simulate-", dir=scratch) as tmp:
        store = open_store(Path(tmp) / "state.sqlite")
        try:
            plan = plan_against_state(desired, store, start, _HORIZON)
            if not plan.empty:
                apply_plan(store, plan, start)
            applied = read_applied(store)
            _check_size(applied, start, end, limit)
            clock = ManualClock(start)
            cancels = any(a.overlap == "cancel" for a in applied.armed.values())
            workers = _Workers(store, run_time, cancels)
            for up_from, up_to, last in _up_intervals(start, end, ordered):
                clock.set(up_from)
                loop = FiringLoop(store, clock, grace=grace)
                _drive(loop, workers, clock, up_to, last, limit)
                if not last:
                    workers.drain(up_to, DRAIN_GRACE)
            sim = Simulation(start, end, ordered, run_time, unarmed=dict(applied.broken))
            sim.entries = _entries(store, applied, limit)
            sim.transitions = _transitions(applied, start, end)
        finally:
            store.close()
    return sim


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def _up_intervals(
    start: datetime, end: datetime, outages: tuple[Outage, ...]
) -> list[tuple[datetime, datetime, bool]]:
    """``(from, to, last)``: the daemon runs on ``[from, to)``, the last one on ``[from, to]``."""
    out: list[tuple[datetime, datetime, bool]] = []
    at = start
    for o in outages:
        if o.start > at:
            out.append((at, o.start, False))
        at = o.end
    out.append((at, end, True))
    return out


def _check_size(applied: Applied, start: datetime, end: datetime, limit: int) -> None:
    """Refuse a range holding more than ``limit`` slots, before anything fires."""
    end_ts = floor_seconds(end)
    total = 0
    for a in sorted(applied.armed.values(), key=lambda a: a.name):
        ts = a.trigger.next_seconds(floor_seconds(start))
        n = 1 if a.trigger.form == "at" else 0  # an ``at:`` already past fires at the start
        while ts is not None and ts <= end_ts:
            n += 1
            if total + n > limit:
                raise SimulationTooLarge(
                    f'the range holds more than {limit:,} slots (schedule "{a.name}" alone has '
                    f"{n:,} by {instant(ts).isoformat()}): simulate a shorter range"
                )
            ts = a.trigger.next_seconds(ts)
        total += n


def _drive(
    loop: FiringLoop,
    workers: _Workers,
    clock: ManualClock,
    until: datetime,
    inclusive: bool,
    limit: int,
) -> None:
    """Run the firing loop as the daemon does, from the clock's instant to ``until``: at each
    wake fire what is due, then sleep until the next fire time or the next run's end."""
    now = clock.now()
    if now == until and not inclusive:
        return
    # Every iteration fires a slot or ends a run, or the next one does (a reload after a
    # schedule was disabled): a bound the work never reaches unless the loop stops progressing.
    for _ in range(4 * limit + 1000):
        # Claiming is a write transaction: only when a run may have become ready (runs wait
        # and one ended; a run left waiting by a stop waits for one that ends, at the latest,
        # in the restart's first pass) or runs were just queued.
        if workers.finish_due(now) and workers.waiting:
            workers.start_ready(now)
        queued = loop.step()
        if queued:
            workers.waiting.update(r.id for r in queued)
            workers.start_ready(now)
            if workers.see_cancels(now) and workers.waiting:
                workers.start_ready(now)
        nxt = _earliest(loop.next_deadline(), workers.next_end())
        if nxt is None or nxt > until or (nxt == until and not inclusive):
            return
        now = max(nxt, now)
        clock.set(now)
    raise RuntimeError(f"the simulation did not get past {now.isoformat()}")  # a bug


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass
class _Running:
    worker: str
    ends: datetime
    status: RunStatus
    message: str | None


class _Workers:
    """The daemon's workers as the simulation has them: any number, each run taking
    ``run_time``, recorded with the store's own lifecycle methods."""

    def __init__(self, store: StateStore, run_time: timedelta, cancels: bool) -> None:
        self.store = store
        self.run_time = run_time
        self.cancels = cancels
        """Some schedule has ``overlap: cancel`` (else no heartbeat can find a cancel)."""
        self.running: dict[RunId, _Running] = {}
        self.waiting: set[RunId] = set()
        """Queued runs not claimed yet (behind another run, or left by a stop)."""
        self.claimed = 0
        self._timeouts: dict[str, timedelta] = {}

    def _timeout(self, template: str) -> timedelta:
        got = self._timeouts.get(template)
        if got is None:
            rec = self.store.get_object("JobTemplate", template)
            got = timedelta(hours=1)
            if rec is not None:
                got = JobTemplate.model_validate_json(rec.body).spec.timeout
            self._timeouts[template] = got
        return got

    def start_ready(self, now: datetime) -> None:
        """Claim every queued run that may start now (none waits for a free worker)."""
        lease = self.run_time.total_seconds() + 3600.0
        while True:
            self.claimed += 1
            worker = f"simulate/w{self.claimed}"
            run = self.store.claim_next_run(worker, lease, now)
            if run is None:
                return
            self.waiting.discard(run.id)
            timeout = self._timeout(run.template)
            if self.run_time > timeout:
                state = _Running(
                    worker,
                    now + timeout,
                    "timed-out",
                    f"timed out after {timeout.total_seconds():g} s",
                )
            else:
                state = _Running(worker, now + self.run_time, "succeeded", None)
            self.running[run.id] = state

    def next_end(self) -> datetime | None:
        return min((r.ends for r in self.running.values()), default=None)

    def finish_due(self, now: datetime) -> int:
        """Record every run that ended by ``now``, at the instant it ended; how many."""
        done = sorted(
            ((r.ends, run_id) for run_id, r in self.running.items() if r.ends <= now),
        )
        for ends, run_id in done:
            r = self.running.pop(run_id)
            self.store.record_outcome(run_id, r.worker, r.status, r.message, [], [], ends)
        return len(done)

    def see_cancels(self, now: datetime) -> int:
        """What each running run's heartbeat would find: a cancel asked by ``overlap:
        cancel`` ends the run now, recorded ``cancelled`` with the reason; how many."""
        if not self.cancels:
            return 0
        cancelled = 0
        for run_id in sorted(self.running):
            r = self.running[run_id]
            answer = self.store.heartbeat(run_id, r.worker, 3600.0, now)
            if answer == "cancel":
                del self.running[run_id]
                note = self.store.cancel_note(run_id) or "cancelled"
                self.store.record_outcome(run_id, r.worker, "cancelled", note, [], [], now)
                cancelled += 1
        return cancelled

    def drain(self, stop: datetime, grace: timedelta) -> None:
        """``serve`` stops at ``stop``: runs still going after ``grace`` are cancelled then."""
        for r in self.running.values():
            if r.ends > stop + grace:
                r.ends = stop + grace
                r.status = "cancelled"
                r.message = (
                    f"cancelled: serve stopped and the run outlasted its "
                    f"{grace.total_seconds():g} s grace period"
                )


def _entries(store: StateStore, applied: Applied, limit: int) -> list[SimEntry]:
    armed = applied.armed
    ledger = store.list_slots(None, None, limit + 1)
    runs = {
        r.id: SimRun(r.id, r.trigger, r.status, r.started_at, r.finished_at, r.message)
        for r in store.list_runs(limit=limit + 1)
    }
    out: list[SimEntry] = []
    for e in sorted(ledger, key=lambda e: (e.slot, e.schedule)):
        a = armed.get(e.schedule)
        at = e.slot
        local = e.slot
        if a is not None:
            if a.trigger.jitter is not None:
                at = fire_at(e.schedule, e.slot, a.trigger.jitter, a.trigger.next_after(e.slot))
            local = a.trigger.local(at)
        out.append(SimEntry(e, at, local, None if e.run_id is None else runs.get(e.run_id)))
    return out


def _transitions(applied: Applied, start: datetime, end: datetime) -> list[Transition]:
    zones: dict[str, Zone] = {a.trigger.timezone: a.trigger.zone for a in applied.armed.values()}
    out: list[Transition] = []
    for name in sorted(zones):
        zone = zones[name]
        at, end_ts = floor_seconds(start), floor_seconds(end)
        while (tr := zone.first_transition(at, end_ts)) is not None:
            ts, before, after = tr
            out.append(
                Transition(
                    name, zone.local(ts), timedelta(seconds=before), timedelta(seconds=after)
                )
            )
            at = ts
    out.sort(key=lambda t: (t.at, t.timezone))
    return out


def offset_text(d: timedelta) -> str:
    """A UTC offset as ``+01:00``."""
    sign = "-" if d < timedelta(0) else "+"
    minutes = abs(int(d.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def slot_json(s: SimEntry) -> dict[str, Any]:
    """One entry of ``simulate --format json``: the object of ``reconciler slots --format
    json`` with ``local`` (``fire_at`` in the schedule's zone), ``recorded_at`` (when serve
    decided it: a slot missed in an outage is decided at the restart) and, for a run, its
    simulated ``trigger``, ``status``, ``started``, ``finished`` and ``message`` (null for a
    skip)."""
    row = entry_json(s.entry, s.fire_at)
    row["local"] = s.local_fire_at.isoformat()
    row["recorded_at"] = s.entry.recorded_at.isoformat()
    r = s.run
    row["trigger"] = r.trigger if r else None
    row["status"] = r.status if r else None
    row["started"] = r.started_at.isoformat() if r and r.started_at else None
    row["finished"] = r.finished_at.isoformat() if r and r.finished_at else None
    row["message"] = r.message if r else None
    return row


def simulation_json(
    sim: Simulation, source: str, revision: str | None, *, slots: bool = True
) -> dict[str, Any]:
    """The ``simulate --format json`` document; ``slots`` (:func:`slot_json` of every entry,
    oldest slot first, ties by schedule name) is left out with ``slots=False`` for a caller
    that streams them."""
    counts: dict[str, int] = {}
    runs = catch_up = 0
    for s in sim.entries:
        if s.entry.run_id is not None:
            runs += 1
            catch_up += s.run is not None and s.run.trigger == "catch-up"
        else:
            reason = s.entry.skip_reason or "skipped"
            counts[reason] = counts.get(reason, 0) + s.entry.count
    doc: dict[str, Any] = {
        "source": source,
        "revision": revision,
        "from": sim.start.isoformat(),
        "to": sim.end.isoformat(),
        "down": [{"from": o.start.isoformat(), "to": o.end.isoformat()} for o in sim.outages],
        "run_time_seconds": sim.run_time.total_seconds(),
        "transitions": [
            {
                "timezone": t.timezone,
                "at": t.at.isoformat(),
                "offset_before": offset_text(t.offset_before),
                "offset_after": offset_text(t.offset_after),
            }
            for t in sim.transitions
        ],
        "unarmed": [{"schedule": k, "problem": v} for k, v in sorted(sim.unarmed.items())],
        "summary": {
            "slots": runs + sum(counts.values()),
            "entries": len(sim.entries),
            "runs": runs,
            "catch_up": catch_up,
            "skipped": dict(sorted(counts.items())),
        },
    }
    if slots:
        doc["slots"] = [slot_json(s) for s in sim.entries]
    return doc
