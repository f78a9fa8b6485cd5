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

    def sleep_until(self, deadline: datetime, wake: threading.Event) -> bool:
        """Block until ``deadline`` (wall clock) or until ``wake`` is set, whichever is first.

        Returns True when woken by ``wake`` (the caller clears it)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline: datetime, wake: threading.Event) -> bool:
        # Event.wait with a timeout wakes within a few tens of microseconds of it on Linux; the
        # wall clock is re-read after every wake, so a clock step shortens or lengthens the wait.
        while True:
            remaining = (deadline - self.now()).total_seconds()
            if remaining <= 0:
                return wake.is_set()
            if wake.wait(min(remaining, 60.0)):
                return True


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

    def sleep_until(self, deadline: datetime, wake: threading.Event) -> bool:
        with self._cond:
            while self._now < deadline:
                if wake.is_set():
                    return True
                # Short real waits so that ``wake`` (an Event, not this condition) is noticed.
                self._cond.wait(0.005)
            return wake.is_set()
