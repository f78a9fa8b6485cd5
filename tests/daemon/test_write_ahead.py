"""The daemon's firing loop writes a fire time's rows ahead of it and commits them at the fire
time (``write_ahead``; see ``WRITE_COST``): on the real clock, both backends. A slot is never
visible before its fire time, is stamped with it, and a write whose fire time does not come
(the wall clock stepped back while it waited) is rolled back and written once, at its time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.clock import SystemClock
from reconciler.engine.firing import PREPARE_AHEAD, FiringLoop
from reconciler.stores import StateStore

from .conftest import apply_dir, running_loop, schedule, until, write_repo


class _SteppedClock(SystemClock):
    """The system clock, with a wall-clock offset a test can step."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return super().now() + self.offset


def _once_at(tmp_path: Path, store: StateStore, now: datetime) -> datetime:
    """Apply one schedule ``once`` due at the next whole second at least 1.5 s away."""
    fire = (now + timedelta(seconds=1.5)).replace(microsecond=0) + timedelta(seconds=1)
    when = "{at: " + fire.strftime("%Y-%m-%dT%H:%M:%SZ") + "}"
    apply_dir(store, write_repo(tmp_path, {"once": schedule("once", when)}), now)
    return fire


def _spy(
    monkeypatch: pytest.MonkeyPatch,
    store: StateStore,
    wrap: Callable[[Callable[[], None]], Callable[[], None]] = lambda hold: hold,
) -> list[tuple[datetime, bool]]:
    """Record when each ``record_fires`` of ``store`` began and whether it was given a hold
    (written ahead); ``wrap`` may replace the hold."""
    calls: list[tuple[datetime, bool]] = []
    real = store.record_fires

    def record_fires(batches: Any, now: Any, recheck: Any = None, hold: Any = None) -> Any:
        calls.append((datetime.now(UTC), hold is not None))
        return real(batches, now, recheck, None if hold is None else wrap(hold))

    monkeypatch.setattr(store, "record_fires", record_fires)
    return calls


def test_a_slot_written_ahead_is_committed_at_its_fire_time_and_stamped_with_it(
    tmp_path: Path, open_state: Callable[[], StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_state()
    fire = _once_at(tmp_path, store, datetime.now(UTC))
    calls = _spy(monkeypatch, store)
    loop = FiringLoop(store, SystemClock(), write_ahead=True)
    loop.write_cost = 0.002  # a lead of 44 ms: a commit before the fire time would show
    loop.reload()
    other = open_state()  # a reader on its own connection, as a worker or the API
    seen: datetime | None = None
    with running_loop(loop):
        end = time.monotonic() + 10
        while seen is None and time.monotonic() < end:
            if other.get_slot("once", fire) is not None:
                seen = datetime.now(UTC)
            time.sleep(0.0005)
    assert seen is not None, "the slot was never recorded"
    assert calls and calls[0][1], "the write was not made ahead"
    assert calls[0][0] < fire - timedelta(milliseconds=20), "the write began too late"
    assert seen >= fire, f"the slot was visible {fire - seen} before its fire time"
    assert seen - fire < timedelta(seconds=1)
    (run,) = other.list_runs(schedule="once")
    assert run.slot == fire and run.created_at == fire


def test_a_write_ahead_whose_fire_time_goes_away_is_rolled_back_and_written_once_at_it(
    tmp_path: Path, open_state: Callable[[], StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_state()
    clock = _SteppedClock()
    fire = _once_at(tmp_path, store, clock.now())
    rolled_back = threading.Event()
    held = {"real": 0.0}

    def step_back(hold: Callable[[], None]) -> Callable[[], None]:
        def stepped() -> None:
            if rolled_back.is_set():
                return hold()
            clock.offset = -timedelta(hours=1)  # the wall clock goes back while it waits
            start = time.monotonic()
            try:
                hold()
            finally:
                held["real"] = time.monotonic() - start
                rolled_back.set()

        return stepped

    calls = _spy(monkeypatch, store, step_back)
    loop = FiringLoop(store, clock, write_ahead=True)
    loop.reload()
    other = open_state()
    with running_loop(loop):
        until(rolled_back.is_set, 10, "the write ahead to give up", 0.005)
        # it waited its bound (twice the lead it may take), not the hour, and kept nothing
        assert held["real"] < 2 * PREPARE_AHEAD.total_seconds() + 0.5
        assert other.get_slot("once", fire) is None
        assert other.list_runs(schedule="once") == []
        time.sleep(0.3)  # an hour before the slot by the wall clock: nothing is written
        assert other.get_slot("once", fire) is None
        clock.offset = timedelta(0)  # the clock comes back: the slot is due (past, by now)
        until(lambda: other.get_slot("once", fire) is not None, 10, "the slot's entry", 0.005)
    assert len(calls) == 2 and calls[0][1] and not calls[1][1]  # the retry: at its time
    (run,) = other.list_runs(schedule="once")
    assert run.slot == fire and run.created_at >= fire


def test_a_wall_clock_stepped_back_during_the_wait_ends_it_at_its_bound(
    tmp_path: Path, open_state: Callable[[], StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_state()
    clock = _SteppedClock()
    fire = _once_at(tmp_path, store, clock.now())
    waited: list[float] = []

    def step_while_waiting(hold: Callable[[], None]) -> Callable[[], None]:
        def stepped() -> None:
            if waited:
                return hold()
            # the step comes while the hold sleeps, not before it
            timer = threading.Timer(0.02, lambda: setattr(clock, "offset", -timedelta(hours=1)))
            timer.start()
            start = time.monotonic()
            try:
                hold()
            finally:
                waited.append(time.monotonic() - start)
                timer.join()

        return stepped

    _spy(monkeypatch, store, step_while_waiting)
    loop = FiringLoop(store, clock, write_ahead=True)
    loop.write_cost = 0.01  # the longest lead, so that the step lands inside the wait
    loop.reload()
    other = open_state()
    with running_loop(loop):
        until(lambda: bool(waited), 10, "the write ahead to give up", 0.005)
        assert waited[0] < 2 * PREPARE_AHEAD.total_seconds() + 0.5
        assert other.get_slot("once", fire) is None
        clock.offset = timedelta(0)
        until(lambda: other.get_slot("once", fire) is not None, 10, "the slot's entry", 0.005)
    (run,) = other.list_runs(schedule="once")
    assert run.slot == fire
