"""The firing loop decides what a fire time will write shortly before it (``PREPARE_AHEAD``)
and writes it at the fire time: what changes in between must count. Driven through
``run_forever`` in a thread, as the daemon runs it, with a manual clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.clock import ManualClock
from reconciler.engine.firing import PREPARE_AHEAD, FiringLoop
from reconciler.stores import NewRun, StateStore

from .conftest import apply_dir, running_loop, schedule, until, write_repo

T0 = datetime(2026, 6, 15, 10, 0, 30, tzinfo=UTC)
SLOT = datetime(2026, 6, 15, 11, tzinfo=UTC)


def _busy(store: StateStore) -> int:
    """A run of ``busy``, running (claimed), from the slot before."""
    run = store.create_run(
        NewRun("ping", "schedule", None, schedule="busy", slot=SLOT - timedelta(hours=1)), T0
    )
    assert run is not None
    assert store.claim_run(run.id, "w", 3600, T0) is not None
    return run.id


def _setup(tmp_path: Path, store: StateStore) -> tuple[FiringLoop, ManualClock]:
    apply_dir(store, write_repo(tmp_path, {"busy": schedule("busy", '{cron: "0 * * * *"}')}), T0)
    clock = ManualClock(T0)
    loop = FiringLoop(store, clock)
    loop.reload()
    return loop, clock


@contextmanager
def _decided(tmp_path: Path, store: StateStore) -> Iterator[tuple[FiringLoop, ManualClock]]:
    """The loop running, with the decision for ``SLOT`` made (the clock half the lead before
    it) and not written yet."""
    loop, clock = _setup(tmp_path, store)
    with running_loop(loop):
        clock.set(SLOT - PREPARE_AHEAD / 2)
        until(lambda: loop._prepared is not None, 10, "the decision ahead of the slot", 0.005)
        assert store.get_slot("busy", SLOT) is None  # decided, not written
        yield loop, clock


def test_a_run_that_finished_after_the_decision_lets_the_slot_run(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    running = _busy(store)
    with _decided(tmp_path, store) as (loop, clock):
        prepared = loop._prepared
        assert prepared is not None
        assert [b.entries[0].skip_reason for _, b, _ in prepared.decided] == ["overlap"]
        # the run it would overlap finishes before the fire time
        assert store.record_outcome(running, "w", "succeeded", None, [], [], T0)
        clock.set(SLOT)
        until(lambda: store.get_slot("busy", SLOT) is not None, 10, "the slot's entry", 0.005)
    entry = store.get_slot("busy", SLOT)
    assert entry is not None and entry.skip_reason is None and entry.run_id is not None


def test_a_run_that_started_after_the_decision_makes_the_slot_overlap(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    with _decided(tmp_path, store) as (_loop, clock):
        _busy(store)  # e.g. an API trigger of the schedule's template, claimed at once
        clock.set(SLOT)
        until(lambda: store.get_slot("busy", SLOT) is not None, 10, "the slot's entry", 0.005)
    entry = store.get_slot("busy", SLOT)
    assert entry is not None and entry.skip_reason == "overlap"


def test_a_decision_fired_late_is_judged_by_the_misfire_policy_when_it_is_recorded(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    with _decided(tmp_path, store) as (_loop, clock):
        clock.set(SLOT + timedelta(hours=3))  # the wall clock jumps (or the process stalled)
        last = SLOT + timedelta(hours=3)
        until(
            lambda: store.get_slot("busy", last) is not None,
            10,
            "the entries after the jump",
            0.005,
        )
    entries = list(reversed(store.list_slots("busy", limit=100)))
    # misfire policy ``once`` at the time of the write: the late slots are one misfire range,
    # the last one runs; the prepared decision (a run at 11:00, on time) was not written
    assert [(e.slot, e.skip_reason, e.count) for e in entries] == [
        (SLOT, "misfire", 3),
        (last, None, 1),
    ]


def test_a_change_of_the_schedules_drops_the_decision(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    with _decided(tmp_path, store) as (loop, clock):
        docs = {"busy": schedule("busy", '{cron: "0 * * * *"}', enabled="false")}
        apply_dir(store, write_repo(tmp_path, docs), T0)
        loop.poke()
        clock.set(SLOT)
        until(lambda: store.get_slot("busy", SLOT) is not None, 10, "the slot's entry", 0.005)
    entry = store.get_slot("busy", SLOT)
    assert entry is not None and entry.skip_reason == "paused"
