"""The ranges of time values the product accepts, and why. Pure; imports nothing heavy.

Durations and instants are bounded where they are parsed (the document models and the command
line), so that every later computation stays inside Python's ``datetime`` range (years 1 to
9999): the latest instant (the end of :data:`MAX_YEAR`) plus the longest interval to the next
slot plus the longest jitter, shown in any time zone, is still far from year 10000. The time
engine computes no slot after :data:`LAST_SLOT_YEAR`, so a schedule that would keep firing past
it (``every: 36500d`` from year 9000) simply ends there.

Imported by :mod:`reconciler.model.common`, :mod:`reconciler.model.schedule`, the time engine
and ``cron explain`` (which must not import pydantic).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

#: The years an instant may lie in: ``at``, ``start``, ``end``, ``cron explain --after``.
MIN_YEAR: Final = 1970
MAX_YEAR: Final = 9000

#: The longest duration (``every``, ``jitter``, ``timeout``, misfire ``window``): 100 years.
MAX_DURATION_DAYS: Final = 36500
MAX_DURATION: Final = timedelta(days=MAX_DURATION_DAYS)

#: No slot is computed in a later year (local or UTC): the last slot plus the longest jitter
#: stays before year 9999, whatever the zone's offset.
LAST_SLOT_YEAR: Final = 9899


def year_problem(year: int) -> str | None:
    """Why an instant in ``year`` is refused, or None when the year is in range."""
    if MIN_YEAR <= year <= MAX_YEAR:
        return None
    return f"the year {year} is outside the years {MIN_YEAR} to {MAX_YEAR} that instants may have"
