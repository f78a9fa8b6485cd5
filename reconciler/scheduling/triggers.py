"""Triggers: one per form of ``when``, and the checks the loader runs on ``when``. Pure.

:func:`build_trigger` turns a validated :class:`~reconciler.model.schedule.When` into a
:class:`Trigger` that answers "which slots" (nominal fire instants) after any instant.
:func:`check_when` reports the problems of a ``when`` as values (never-firing schedules, an
``at`` already past, bad windows, unknown zones, cron syntax errors with their column).

Forms and their DST rule (see :mod:`reconciler.scheduling.zones`):

=========  ==================================================  ==============
form       slots                                               DST rule
=========  ==================================================  ==============
at         the one instant                                     fixed-time
every      ``start`` (or 1970-01-01T00:00Z) + k x interval      elapsed time
daily      every day at ``at``                                 fixed-time
weekly     on each listed weekday at ``at``                    fixed-time
monthly    on ``day`` (a month without that day is skipped)    fixed-time
           or on the ``last`` day, at ``at``
yearly     on ``month``/``day`` at ``at`` (Feb 29: leap years)  fixed-time
cron       :mod:`reconciler.scheduling.cron`                   fixed-time if no
                                                               ``*`` in s/m/h,
                                                               else real-time
=========  ==================================================  ==============

``start`` and ``end`` bound the slots, both inclusive. No slot lies after the end of year
:data:`~reconciler.model.bounds.LAST_SLOT_YEAR` (UTC): the documents bound instants and
durations (:mod:`reconciler.model.bounds`), and this bounds how far the slots of a long
``every`` may go, so that jitter, offsets and the next slot stay in ``datetime``'s range.

Naive datetimes in ``at``, ``start`` and ``end`` are wall-clock times of the schedule's zone
(resolved with the fixed-time rule); aware ones are instants. Every datetime a trigger returns
is an aware UTC datetime, so that comparisons and arithmetic are exact across DST folds;
:meth:`Trigger.local` shows one in the schedule's zone. Nothing here reads the clock: ``now``
is always an argument.

Called by the loader (:func:`check_when`), the planner, the daemon and ``cron explain``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal

from reconciler.model.bounds import LAST_SLOT_YEAR
from reconciler.scheduling.cron import (
    CronExpression,
    CronSyntaxError,
    DayRule,
    build_calendar,
    parse_cron,
)
from reconciler.scheduling.cron import _rule as shared_rule
from reconciler.scheduling.zones import (
    UnknownTimezone,
    Zone,
    floor_seconds,
    get_zone,
    instant,
    next_fixed,
    next_real,
    wall_seconds,
)

if TYPE_CHECKING:  # the model imports pydantic; `cron explain` must start fast without it
    from reconciler.model.schedule import When

#: The last instant a slot may have (POSIX seconds): the end of LAST_SLOT_YEAR, UTC.
LAST_SLOT: Final = wall_seconds(LAST_SLOT_YEAR, 12, 31, 23, 59, 59)

#: Weekday names of ``weekly.days``, in Python's numbering (Monday = 0); as in the model.
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

DstRule = Literal["fixed-time", "real-time", "elapsed"]

#: Diagnostic codes :func:`check_when` may return (all defined in model/diagnostics.py).
WHEN_CODES: Final = ("when-invalid", "when-never", "when-past", "when-window", "timezone-unknown")


class WhenError(ValueError):
    """A ``when`` that cannot be turned into a trigger.

    ``field`` is the key path inside ``when`` at fault, dotted (``"cron"``, ``"timezone"``,
    ``"start"``, ``"weekly.days"``); ``path`` is the same as a tuple. ``column`` is the 1-based
    column inside a cron expression, when the fault is there. ``code`` is the diagnostic code.
    """

    def __init__(
        self,
        message: str,
        field: str,
        *,
        column: int | None = None,
        code: str = "when-invalid",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.path: tuple[str, ...] = tuple(field.split("."))
        self.column = column
        self.code = code


@dataclass(frozen=True, slots=True)
class WhenProblem:
    """One problem of a ``when``, for the loader to turn into a diagnostic."""

    code: str  #: one of :data:`WHEN_CODES`
    severity: Literal["error", "warning"]
    message: str
    field: tuple[str, ...]  #: key path inside ``when``, e.g. ``("cron",)``
    column: int | None = None  #: 1-based column inside a cron expression


class Trigger(ABC):
    """The slots of one ``when``: nominal fire instants, strictly increasing.

    Attributes: ``form`` (``at``, ``every``, ``daily``, ...), ``timezone`` (IANA name),
    ``zone``, ``fixed_time`` (True when the fixed-time DST rule applies), ``dst_rule``
    (``fixed-time``, ``real-time`` or ``elapsed``), ``start``/``end`` (aware UTC or None),
    ``jitter`` (or None), ``expression`` (the cron expression for cron and calendar forms).
    """

    __slots__ = (
        "_end",
        "_start",
        "dst_rule",
        "end",
        "expression",
        "fixed_time",
        "form",
        "jitter",
        "start",
        "timezone",
        "zone",
    )

    def __init__(
        self,
        form: str,
        zone: Zone,
        start: int | None,
        end: int | None,
        jitter: timedelta | None,
        *,
        dst_rule: DstRule = "fixed-time",
        expression: CronExpression | None = None,
    ) -> None:
        self.form = form
        self.dst_rule: DstRule = dst_rule
        self.fixed_time = dst_rule == "fixed-time"
        self.expression = expression
        self.zone = zone
        self.timezone = zone.key
        self._start = start
        self._end = end
        self.start = instant(start) if start is not None else None
        self.end = instant(end) if end is not None else None
        self.jitter = jitter if jitter else None

    @abstractmethod
    def _next(self, after: int) -> int | None:
        """The first slot strictly after ``after`` (POSIX seconds), ignoring the window."""

    def next_seconds(self, after: int) -> int | None:
        """:meth:`next_after` on POSIX seconds (the hot path of the daemon and the loader)."""
        if self._start is not None and after < self._start:
            after = self._start - 1
        ts = self._next(after)
        if ts is None or ts > LAST_SLOT or (self._end is not None and ts > self._end):
            return None
        return ts

    def next_after(self, t: datetime) -> datetime | None:
        """The first slot strictly after the aware instant ``t``, or None if there is none."""
        ts = self.next_seconds(floor_seconds(t))
        return None if ts is None else instant(ts)

    def slots_after(self, t: datetime, count: int) -> list[datetime]:
        """The next ``count`` slots strictly after ``t`` (fewer if the schedule runs out)."""
        out: list[datetime] = []
        ts = floor_seconds(t)
        while len(out) < count:
            nxt = self.next_seconds(ts)
            if nxt is None:
                break
            out.append(instant(nxt))
            ts = nxt
        return out

    def due_between(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Every slot ``s`` with ``after < s <= until``, in order."""
        ts = floor_seconds(after)
        limit = floor_seconds(until)
        while True:
            nxt = self.next_seconds(ts)
            if nxt is None or nxt > limit:
                return
            yield instant(nxt)
            ts = nxt

    def local(self, t: datetime) -> datetime:
        """``t`` shown in the schedule's zone (with its local offset)."""
        return t.astimezone(self.zone.info)


class CronTrigger(Trigger):
    """``cron`` and the calendar forms: wall-clock matches under the DST rule."""

    __slots__ = ("_expr",)

    def __init__(
        self,
        form: str,
        expression: CronExpression,
        zone: Zone,
        start: int | None,
        end: int | None,
        jitter: timedelta | None,
    ) -> None:
        rule: DstRule = "fixed-time" if expression.fixed_time else "real-time"
        super().__init__(form, zone, start, end, jitter, dst_rule=rule, expression=expression)
        self._expr = expression

    def _next(self, after: int) -> int | None:
        if self.fixed_time:
            return next_fixed(self._expr, self.zone, after)
        return next_real(self._expr, self.zone, after)


class AtTrigger(Trigger):
    """``at``: one slot."""

    __slots__ = ("at",)

    def __init__(
        self, at: int, zone: Zone, start: int | None, end: int | None, jitter: timedelta | None
    ) -> None:
        super().__init__("at", zone, start, end, jitter)
        self.at = at

    def _next(self, after: int) -> int | None:
        return self.at if self.at > after else None


class EveryTrigger(Trigger):
    """``every``: ``anchor + k * interval`` for k >= 0, counting elapsed time."""

    __slots__ = ("anchor", "interval")

    def __init__(
        self,
        interval: int,
        anchor: int,
        zone: Zone,
        start: int | None,
        end: int | None,
        jitter: timedelta | None,
    ) -> None:
        super().__init__("every", zone, start, end, jitter, dst_rule="elapsed")
        self.interval = interval
        self.anchor = anchor

    def _next(self, after: int) -> int | None:
        if after < self.anchor:
            return self.anchor
        return self.anchor + ((after - self.anchor) // self.interval + 1) * self.interval


# ---------------------------------------------------------------------------------------------


def _resolve(value: datetime, zone: Zone) -> int:
    """``at``/``start``/``end``: naive = wall clock (fixed-time rule); aware = an instant."""
    if value.tzinfo is None or value.utcoffset() is None:
        return zone.resolve_fixed(
            value.year, value.month, value.day, value.hour, value.minute, value.second
        )
    return floor_seconds(value)


#: Calendar matchers by form, ``at`` and the form's fields (as given: no normalising needed
#: to look one up).
_CALENDARS: dict[tuple[object, ...], CronExpression] = {}
_ALL_MONTHS: Final = tuple(range(1, 13))


def _calendar_key(when: When) -> tuple[object, ...] | None:
    """The cache key of a calendar form; its first element is the form. None for the rest."""
    if when.daily is not None:
        return ("daily", when.daily.at)
    if when.weekly is not None:
        return ("weekly", when.weekly.at, *when.weekly.days)
    if when.monthly is not None:
        return ("monthly", when.monthly.at, when.monthly.day)
    if when.yearly is not None:
        return ("yearly", when.yearly.at, when.yearly.month, when.yearly.day)
    return None


def _build_calendar(when: When) -> CronExpression:
    rule: DayRule
    months = _ALL_MONTHS
    if when.daily is not None:
        at, rule, label = when.daily.at, shared_rule("all"), f"daily at {when.daily.at}"
    elif when.weekly is not None:
        days = tuple(sorted({WEEKDAYS.index(d) for d in when.weekly.days}))
        at, label = when.weekly.at, f"weekly at {when.weekly.at}"
        rule = shared_rule("all") if len(days) == 7 else shared_rule("dow", dow=frozenset(days))
    elif when.monthly is not None:
        day = when.monthly.day
        at, label = when.monthly.at, f"monthly at {when.monthly.at}"
        rule = DayRule("last") if day == "last" else shared_rule("dom", dom=frozenset({day}))
    else:
        assert when.yearly is not None
        at, label = when.yearly.at, f"yearly at {when.yearly.at}"
        rule, months = shared_rule("dom", dom=frozenset({when.yearly.day})), (when.yearly.month,)
    return build_calendar(
        second=at.second, minute=at.minute, hour=at.hour, rule=rule, months=months, label=label
    )


def _calendar(when: When) -> tuple[str, CronExpression] | None:
    """The form and the (cached) wall-clock matcher of a calendar form, else None."""
    key = _calendar_key(when)
    if key is None:
        return None
    got = _CALENDARS.get(key)
    if got is None:
        got = _build_calendar(when)
        if len(_CALENDARS) > 65536:
            _CALENDARS.clear()
        _CALENDARS[key] = got
    return str(key[0]), got


def calendar_expression(when: When) -> CronExpression | None:
    """The wall-clock matcher of a calendar form (daily/weekly/monthly/yearly), else None."""
    cal = _calendar(when)
    return None if cal is None else cal[1]


def build_trigger(when: When, default_timezone: str) -> Trigger:
    """The :class:`Trigger` of a ``when``; raises :class:`WhenError`."""
    tz_name = when.timezone if when.timezone is not None else default_timezone
    try:
        zone = get_zone(tz_name)
    except UnknownTimezone as e:
        raise WhenError(str(e), "timezone", code="timezone-unknown") from None
    start = _resolve(when.start, zone) if when.start is not None else None
    end = _resolve(when.end, zone) if when.end is not None else None
    if start is not None and end is not None and start >= end:
        raise WhenError(
            f"start ({when.start}) is not before end ({when.end})", "end", code="when-window"
        )
    jitter = when.jitter
    if when.at is not None:
        return AtTrigger(_resolve(when.at, zone), zone, start, end, jitter)
    if when.every is not None:
        interval = when.every.total_seconds()
        if interval < 1 or interval != int(interval):
            raise WhenError(
                f"every: {when.every} must be a whole number of seconds, at least 1s", "every"
            )
        anchor = start if start is not None else 0
        return EveryTrigger(int(interval), anchor, zone, start, end, jitter)
    if when.cron is not None:
        try:
            expr = parse_cron(when.cron)
        except CronSyntaxError as e:
            raise WhenError(e.message, "cron", column=e.column) from None
        return CronTrigger("cron", expr, zone, start, end, jitter)
    cal = _calendar(when)
    assert cal is not None, when.form
    return CronTrigger(cal[0], cal[1], zone, start, end, jitter)


def _never_field(when: When) -> tuple[str, ...]:
    if when.yearly is not None:
        return ("yearly", "day")
    if when.monthly is not None:
        return ("monthly", "day")
    return (when.form,)


def check_when(when: When, default_timezone: str, now: datetime) -> list[WhenProblem]:
    """The problems of one ``when`` at instant ``now`` (an aware datetime), as values.

    * ``timezone-unknown`` (error): the zone is not an IANA name;
    * ``when-invalid`` (error): a cron syntax error (with ``column``), a bad interval;
    * ``when-window`` (error): ``start`` is not before ``end``;
    * ``when-never`` (error): no slot can ever come: a date that never exists (Feb 30), a
      year field wholly in the past, an ``end`` before the first slot, an ``at`` outside the
      window;
    * ``when-past`` (warning): an ``at`` already past (it runs once, right away, when applied).

    Cheap (a cached parse and one slot computation): the loader calls it for every schedule.
    """
    try:
        trigger = build_trigger(when, default_timezone)
    except WhenError as e:
        return [WhenProblem(e.code, "error", e.message, e.path, e.column)]
    now_ts = floor_seconds(now)
    if isinstance(trigger, AtTrigger):
        at = trigger.at
        if (trigger._start is not None and at < trigger._start) or (
            trigger._end is not None and at > trigger._end
        ):
            bound = "start" if trigger._start is not None and at < trigger._start else "end"
            return [
                WhenProblem(
                    "when-never",
                    "error",
                    f"at {_show(trigger, at)} is outside the window (it is "
                    f"{'before start' if bound == 'start' else 'after end'}), so it never runs",
                    ("at",),
                )
            ]
        if at <= now_ts:
            return [
                WhenProblem(
                    "when-past",
                    "warning",
                    f"at {_show(trigger, at)} has already passed: the job runs once, right "
                    "away, when this is applied",
                    ("at",),
                )
            ]
        return []
    first = trigger.next_seconds(now_ts)
    if first is not None:
        return []
    expr = trigger.expression
    if expr is not None and expr.never is not None:
        return [
            WhenProblem("when-never", "error", f"never fires: {expr.never}", _never_field(when))
        ]
    if expr is not None and expr.years is not None and expr.years[-1] < _year(trigger, now_ts):
        years = expr.years
        span = str(years[0]) if len(years) == 1 else f"{years[0]}-{years[-1]}"
        return [
            WhenProblem(
                "when-never",
                "error",
                f"never fires: its years ({span}) are all in the past",
                ("cron",),
            )
        ]
    if trigger._end is not None:
        unbounded = trigger._next(max(now_ts, (trigger._start or now_ts) - 1))
        if unbounded is not None:
            return [
                WhenProblem(
                    "when-never",
                    "error",
                    f"never fires: end {_show(trigger, trigger._end)} is before its first "
                    f"slot {_show(trigger, unbounded)}",
                    ("end",),
                )
            ]
    return [
        WhenProblem(
            "when-never",
            "error",
            f"never fires: no slot after {_show(trigger, now_ts)}",
            (when.form,),
        )
    ]


def _year(trigger: Trigger, ts: int) -> int:
    return trigger.zone.local(ts).year


def _show(trigger: Trigger, ts: int) -> str:
    return trigger.zone.local(ts).isoformat()
