"""Plain-English descriptions of cron expressions and ``when`` forms. Pure.

Wording follows crontab.guru ("At every 15th minute past every hour from 9 through 17.") and
covers both dialects, Quartz's special day forms included. :func:`explain_cron` bundles what
``reconciler cron explain`` prints: dialect, description, DST rule and the next fire times.

Called by the ``cron explain`` command and, later, by ``schedules`` and the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from reconciler.scheduling.cron import (
    DOM,
    DOW,
    HOUR,
    MINUTE,
    MONTH,
    SECOND,
    WEEKDAY_WORDS,
    YEAR,
    CronExpression,
    Item,
    parse_cron,
)
from reconciler.scheduling.triggers import CronTrigger, DstRule
from reconciler.scheduling.zones import get_zone

MONTH_WORDS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

#: What each DST rule means, in words (shown by ``cron explain``).
DST_RULE_TEXT: Final[dict[str, str]] = {
    "fixed-time": (
        "fixed time of day: fires once on each matching local day; a time that falls into a "
        "spring-forward gap fires at the first instant after the gap, and a time that occurs "
        "twice at fall-back fires at its first occurrence only"
    ),
    "real-time": (
        "follows real time (a '*' in the second, minute or hour field): local times skipped by "
        "a spring-forward gap do not fire, and local times that occur twice at fall-back fire "
        "twice"
    ),
    "elapsed": "counts elapsed time: DST changes do not move it",
}


def ordinal(n: int) -> str:
    """``1`` -> ``1st``, ``22`` -> ``22nd``."""
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _dow_word(dialect: str, v: int) -> str:
    py = (v + 5) % 7 if dialect == "quartz" else (v + 6) % 7
    return WEEKDAY_WORDS[py]


def _namer(field: str, dialect: str) -> tuple[str, object]:
    """The unit word of a field and how to show one of its values."""
    if field == MONTH:
        return "month", lambda v: MONTH_WORDS[v - 1]
    if field == DOW:
        return "day-of-week", lambda v: _dow_word(dialect, v)
    return field, str


def _items_phrase(items: tuple[Item, ...], field: str, dialect: str) -> str:
    """``every 15th minute``, ``minute 0 and 30``, ``every hour from 9 through 17``."""
    unit, show = _namer(field, dialect)
    assert callable(show)
    singles: list[str] = []
    phrases: list[str] = []
    for it in items:
        if it.kind == "all":
            return f"every {unit}"
        if it.kind == "value":
            singles.append(str(show(it.start)))
            continue
        # a range, possibly stepped
        every = f"every {ordinal(it.step)} {unit}" if it.step > 1 else f"every {unit}"
        whole = _whole_range(field, dialect, it)
        if whole:
            phrases.append(every)
        elif it.step == 1 and field in (MONTH, DOW, YEAR):
            phrases.append(f"{show(it.start)} through {show(it.end)}")
        else:
            phrases.append(f"{every} from {show(it.start)} through {show(it.end)}")
    if singles:
        label = "" if field in (MONTH, DOW) else f"{unit} "
        phrases.insert(0, label + _join(singles))
    return _join(phrases)


def _whole_range(field: str, dialect: str, it: Item) -> bool:
    lo, hi = {
        SECOND: (0, 59),
        MINUTE: (0, 59),
        HOUR: (0, 23),
        DOM: (1, 31),
        MONTH: (1, 12),
        DOW: (1, 7) if dialect == "quartz" else (0, 7),
        YEAR: (1970, 2199),
    }[field]
    return it.start == lo and it.end in (hi, 6 if field == DOW and dialect == "unix" else hi)


def _only_values(items: tuple[Item, ...]) -> list[int] | None:
    if all(it.kind == "value" for it in items):
        return sorted({it.start for it in items})
    return None


def _time_phrase(c: CronExpression) -> str:
    sec_items = c.items.get(SECOND, (Item("value", 0, 0),))
    secs = _only_values(sec_items)
    mins = _only_values(c.items[MINUTE])
    hours = _only_values(c.items[HOUR])
    if secs is not None and mins is not None and hours is not None:
        combos = len(secs) * len(mins) * len(hours)
        if combos <= 8:
            show_secs = secs != [0]
            times = [
                f"{h:02d}:{m:02d}" + (f":{s:02d}" if show_secs else "")
                for h in hours
                for m in mins
                for s in secs
            ]
            return "At " + _join(times)
    parts: list[str] = []
    if c.dialect == "quartz" and secs != [0]:
        parts.append(_items_phrase(sec_items, SECOND, c.dialect))
    parts.append(_items_phrase(c.items[MINUTE], MINUTE, c.dialect))
    hour_phrase = _items_phrase(c.items[HOUR], HOUR, c.dialect)
    if hour_phrase != "every hour":
        parts.append(hour_phrase)
    # crontab.guru leaves out the coarser fields that are plain '*'
    while len(parts) > 1 and parts[-1] in ("every minute",):
        parts.pop()
    return "At " + " past ".join(parts)


def _day_phrase(c: CronExpression) -> str:
    rule = c.day_rule
    mode = rule.mode
    if mode == "all":
        return ""
    if mode == "dom":
        return "on " + _items_phrase(c.items[DOM], DOM, c.dialect)
    if mode == "dow":
        return "on " + _items_phrase(c.items[DOW], DOW, c.dialect)
    if mode == "or":
        dom = _items_phrase(c.items[DOM], DOM, c.dialect)
        return f"on {dom} and on {_items_phrase(c.items[DOW], DOW, c.dialect)}"
    if mode == "and":
        dom = _items_phrase(c.items[DOM], DOM, c.dialect)
        return f"on {dom} if it is {_items_phrase(c.items[DOW], DOW, c.dialect)}"
    if mode == "last":
        if rule.n == 0:
            return "on the last day of the month"
        return f"{rule.n} day{'s' if rule.n > 1 else ''} before the last day of the month"
    if mode == "last-weekday":
        if rule.n == 0:
            return "on the last weekday of the month"
        return (
            f"on the weekday nearest {rule.n} day{'s' if rule.n > 1 else ''} before the last "
            "day of the month"
        )
    if mode == "nearest":
        return f"on the weekday nearest day {rule.n} of the month"
    if mode == "nth":
        return f"on the {ordinal(rule.k)} {WEEKDAY_WORDS[rule.n]} of the month"
    if mode == "last-dow":
        return f"on the last {WEEKDAY_WORDS[rule.n]} of the month"
    raise AssertionError(mode)  # pragma: no cover


def describe_cron(c: CronExpression) -> str:
    """A plain-English sentence for a parsed expression (either dialect)."""
    parts = [_time_phrase(c)]
    day = _day_phrase(c)
    if day:
        parts.append(day)
    month_items = c.items.get(MONTH, ())
    if c.months != tuple(range(1, 13)) and month_items:
        parts.append("in " + _items_phrase(month_items, MONTH, c.dialect))
    year_items = c.items.get(YEAR, ())
    if c.years is not None and year_items:
        phrase = _items_phrase(year_items, YEAR, c.dialect).removeprefix("year ")
        parts.append("in " + phrase)
    return " ".join(parts) + "."


@dataclass(frozen=True, slots=True)
class Explanation:
    """What ``cron explain`` shows for one expression."""

    expression: str
    dialect: str
    timezone: str
    description: str
    dst_rule: DstRule
    dst_rule_description: str
    after: datetime
    next: list[datetime]  #: aware datetimes in the expression's zone
    never: str | None  #: why there is no fire time, when ``next`` is empty


def explain_cron(expression: str, timezone: str, after: datetime, count: int) -> Explanation:
    """Explain an expression; raises ``CronSyntaxError`` or ``UnknownTimezone``."""
    c = parse_cron(expression)
    zone = get_zone(timezone)
    trigger = CronTrigger("cron", c, zone, None, None, None)
    slots = [trigger.local(s) for s in trigger.slots_after(after, count)]
    never = None
    if not slots and count > 0:
        if c.never is not None:
            never = f"it never fires: {c.never}"
        elif c.years is not None:
            never = f"it never fires after {after.isoformat()}: its years end in {c.years[-1]}"
        else:
            never = f"it never fires after {after.isoformat()}"
    return Explanation(
        expression=expression,
        dialect=c.dialect,
        timezone=zone.key,
        description=describe_cron(c),
        dst_rule=trigger.dst_rule,
        dst_rule_description=DST_RULE_TEXT[trigger.dst_rule],
        after=after,
        next=slots,
        never=never,
    )
