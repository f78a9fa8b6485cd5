"""When schedules fire: cron dialects, triggers, the DST rule, jitter, slots, misfire and
overlap decisions, and explanations. Pure: nothing here reads the clock or the environment;
``now`` is always an argument. See ``docs/scheduling.md``.

Modules: :mod:`.cron` (both cron dialects), :mod:`.zones` (time zones and the DST rule),
:mod:`.triggers` (one trigger per form of ``when``; :func:`check_when` for the loader),
:mod:`.jitter`, :mod:`.slots` (upcoming slots, misfire and overlap decisions), :mod:`.explain`
(plain-English descriptions).
"""

from reconciler.scheduling.cron import CronExpression, CronSyntaxError, parse_cron
from reconciler.scheduling.jitter import fire_at, jitter_delay
from reconciler.scheduling.slots import (
    OverlapDecision,
    SlotDecision,
    Upcoming,
    decide_overlap,
    plan_missed,
    upcoming,
)
from reconciler.scheduling.triggers import (
    Trigger,
    WhenError,
    WhenProblem,
    build_trigger,
    check_when,
)
from reconciler.scheduling.zones import UnknownTimezone, get_zone

__all__ = [
    "CronExpression",
    "CronSyntaxError",
    "OverlapDecision",
    "SlotDecision",
    "Trigger",
    "UnknownTimezone",
    "Upcoming",
    "WhenError",
    "WhenProblem",
    "build_trigger",
    "check_when",
    "decide_overlap",
    "fire_at",
    "get_zone",
    "jitter_delay",
    "parse_cron",
    "plan_missed",
    "upcoming",
]
