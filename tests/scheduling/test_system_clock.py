"""The real clock's wait: never returns before its deadline, spins only its last stretch, and
a wake ends it at once, also while spinning."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from reconciler.clock import SPIN_SECONDS, SystemClock, spin_until


def test_the_wait_never_returns_before_its_deadline() -> None:
    clock = SystemClock()
    wake = threading.Event()
    for ms in (0.1, 0.5, 2.0, 10.0):
        deadline = clock.now() + timedelta(milliseconds=ms)
        assert clock.sleep_until(deadline, wake) is False
        assert clock.now() >= deadline


def test_a_wake_ends_the_wait_before_and_during_the_spin() -> None:
    clock = SystemClock()
    wake = threading.Event()
    wake.set()
    far = clock.now() + timedelta(seconds=30)
    started = time.monotonic()
    assert clock.sleep_until(far, wake) is True
    assert time.monotonic() - started < 1
    # set while the waiter spins: a clock that stands still a tenth of a millisecond before
    # its deadline keeps it in the last stretch until the wake
    wake.clear()
    start = datetime.now(UTC)
    deadline = start + timedelta(seconds=SPIN_SECONDS / 3)
    threading.Timer(0.005, wake.set).start()
    assert spin_until(lambda: start, deadline, wake, 1.0) is True
    assert time.monotonic() - started < 5


def test_a_wait_past_its_deadline_returns_at_once() -> None:
    clock = SystemClock()
    wake = threading.Event()
    assert clock.sleep_until(clock.now() - timedelta(seconds=1), wake) is False
    wake.set()
    assert clock.sleep_until(clock.now() - timedelta(seconds=1), wake) is True


def test_a_wait_gives_up_at_its_monotonic_bound_when_the_wall_clock_went_back() -> None:
    wake = threading.Event()
    wall = datetime.now(UTC) - timedelta(hours=1)  # the deadline is an hour away by the wall
    start = time.monotonic()
    assert spin_until(lambda: wall, wall + timedelta(hours=1), wake, 1.0, start + 0.05) is False
    assert 0.05 <= time.monotonic() - start < 1.0
