"""Deterministic jitter: a delay that is a pure function of (schedule, slot). Pure.

The delay of a slot is ``floor(h * span / 2**64)`` whole seconds (fire times print cleanly
and a slot never starts a fraction of a second apart on two replicas), where ``h`` is the first 64
bits of BLAKE2b over the schedule name and the slot's POSIX second, and ``span`` is the
smaller of ``jitter`` and the time to the next slot. So it lies in ``[0, jitter)``, it never
pushes a run to or past the next slot, and every replica computes the same value after any
restart (Python's own ``hash()`` is salted per process and is not used).

Called by :mod:`reconciler.scheduling.slots` (upcoming fire times) and the daemon.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from hashlib import blake2b

from reconciler.scheduling.zones import floor_seconds

_ONE_S = timedelta(seconds=1)


def jitter_delay(
    schedule_name: str,
    slot: datetime,
    jitter: timedelta | None,
    next_slot: datetime | None,
) -> timedelta:
    """The delay added to ``slot``: in ``[0, jitter)`` and below ``next_slot - slot``."""
    if jitter is None or jitter <= timedelta(0):
        return timedelta(0)
    span = jitter
    if next_slot is not None:
        span = min(span, next_slot - slot)
    span_s = span // _ONE_S
    if span_s <= 0:
        return timedelta(0)
    key = f"{schedule_name}\x00{floor_seconds(slot)}".encode()
    h = int.from_bytes(blake2b(key, digest_size=8).digest(), "big")
    return timedelta(seconds=(h * span_s) >> 64)


def fire_at(
    schedule_name: str,
    slot: datetime,
    jitter: timedelta | None,
    next_slot: datetime | None,
) -> datetime:
    """When the run for ``slot`` starts: ``slot`` plus its deterministic jitter delay.

    ``next_slot`` is the slot after ``slot`` (None if there is none); the result is always
    strictly before it.
    """
    return slot + jitter_delay(schedule_name, slot, jitter, next_slot)
