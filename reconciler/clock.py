"""The clock seam: the only place the live half reads the time.

Everything below ``engine/`` takes instants as arguments; the engine's loops take a
:class:`Clock`. :class:`SystemClock` is the real one; :class:`ManualClock` is set and advanced
by hand (tests, ``reconciler simulate``), and its :meth:`~ManualClock.sleep_until` wakes the
moment the clock is moved past the deadline, so a loop driven by it never waits in real time.

``now()`` is an aware UTC instant. ``monotonic()`` measures elapsed time (heartbeats, back-off);
on the manual clock it moves with ``now()``, so a test that steps the wall clock back by an hour
sees the monotonic time stand still instead of running backwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the loops need of time."""

    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals, not for instants)."""
        ...

    def sleep_until(
        self, deadline: datetime, wake: threading.Event, *, give_up: float | None = None
    ) -> bool:
        """Block until ``deadline`` (wall clock) or until ``wake`` is set, whichever is first;
        with ``give_up``, a reading of :meth:`monotonic`, also no longer than that (a wall
        clock stepped back while waiting does not lengthen the wait past it).

        Returns True when woken by ``wake`` (the caller clears it)."""
        ...


#: The last stretch of a wait that :meth:`SystemClock.sleep_until` spends spinning instead of
#: sleeping: a timed wait on Linux returns 60-150 us after its timeout (the kernel's timer
#: slack, then the interpreter lock), which is most of a fire's lateness. The spin gives the
#: interpreter lock away at every turn, so other threads run meanwhile.
SPIN_SECONDS = 0.0003


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep_until(
        self, deadline: datetime, wake: threading.Event, *, give_up: float | None = None
    ) -> bool:
        # The wall clock is re-read after every wake, so a clock step shortens or lengthens
        # the wait (up to ``give_up``); the last :data:`SPIN_SECONDS` are spun (see there).
        return spin_until(self.now, deadline, wake, 1.0, give_up, self.monotonic)


def spin_until(
    now: Callable[[], datetime],
    deadline: datetime,
    wake: threading.Event,
    rate: float,
    give_up: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> bool:
    """:meth:`SystemClock.sleep_until` for a wall clock ``now`` and a ``monotonic`` clock that
    run ``rate`` times as fast as real time (1.0: the real clock)."""
    while True:
        remaining = (deadline - now()).total_seconds() / rate
        if give_up is not None:
            remaining = min(remaining, (give_up - monotonic()) / rate)
        if remaining <= 0:
            return wake.is_set()
        if remaining > SPIN_SECONDS:
            if wake.wait(min(remaining - SPIN_SECONDS, 60.0)):
                return True
        elif wake.is_set():
            return True
        else:
            time.sleep(0)


class ManualClock:
    """A clock moved by hand. Thread-safe; ``sleep_until`` returns as soon as the clock reaches
    the deadline through :meth:`set` or :meth:`advance`."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a manual clock starts at an aware instant")
        self._now = start.astimezone(UTC)
        self._mono = 0.0
        self._cond = threading.Condition()

    def now(self) -> datetime:
        with self._cond:
            return self._now

    def monotonic(self) -> float:
        with self._cond:
            return self._mono

    def set(self, instant: datetime) -> None:
        """Jump to ``instant`` (also backwards: a wall-clock step; monotonic time stays)."""
        with self._cond:
            new = instant.astimezone(UTC)
            if new > self._now:
                self._mono += (new - self._now).total_seconds()
            self._now = new
            self._cond.notify_all()

    def advance(self, delta: timedelta | float) -> None:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._cond:
            self._now += step
            if step > timedelta(0):
                self._mono += step.total_seconds()
            self._cond.notify_all()

    def sleep_until(
        self, deadline: datetime, wake: threading.Event, *, give_up: float | None = None
    ) -> bool:
        with self._cond:
            while self._now < deadline and (give_up is None or self._mono < give_up):
                if wake.is_set():
                    return True
                # Short real waits so that ``wake`` (an Event, not this condition) is noticed.
                self._cond.wait(0.005)
            return wake.is_set()
