"""Cron expressions in two dialects: parsing, validation and local wall-clock matching. Pure.

Owns the grammar of ``when.cron`` (see ``docs/scheduling.md``):

* **unix** — 5 fields ``minute hour day-of-month month day-of-week`` with Vixie cron
  semantics: 0 and 7 are Sunday, names ``jan``..``dec`` and ``sun``..``sat``, steps, ranges,
  lists, macros ``@hourly`` ``@daily``/``@midnight`` ``@weekly`` ``@monthly``
  ``@yearly``/``@annually``, and the OR rule: when both day fields are restricted (neither
  starts with ``*``) a day matches if *either* matches.
* **quartz** — 6 or 7 fields ``second minute hour day-of-month month day-of-week [year]``
  with Quartz 2.3 semantics: exactly one of the day fields is ``?``, ``L``, ``L-n``, ``LW``,
  ``L-nW``, ``nW``, ``nL``, ``n#k``, day-of-week 1=SUN..7=SAT, wrap-around ranges
  (``22-2``). What Quartz silently misreads is rejected with a :class:`CronSyntaxError`.

A :class:`CronExpression` knows nothing about time zones: it answers "which local wall-clock
times match" (:meth:`CronExpression.next_local`). The DST rule that turns wall-clock times
into instants lives in :mod:`reconciler.scheduling.zones`; the triggers combine the two.

Called by :mod:`reconciler.scheduling.triggers`, :mod:`reconciler.scheduling.explain` and the
``cron explain`` command. Parsed expressions are cached by their text.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Final, Literal

from reconciler.model.bounds import LAST_SLOT_YEAR

Dialect = Literal["unix", "quartz"]

#: Field names, as used in messages and in :attr:`CronSyntaxError.field`.
SECOND: Final = "second"
MINUTE: Final = "minute"
HOUR: Final = "hour"
DOM: Final = "day-of-month"
MONTH: Final = "month"
DOW: Final = "day-of-week"
YEAR: Final = "year"

QUARTZ_FIELDS: Final = (SECOND, MINUTE, HOUR, DOM, MONTH, DOW, YEAR)
UNIX_FIELDS: Final = (MINUTE, HOUR, DOM, MONTH, DOW)

#: Years a Quartz year field may name. Quartz documents 1970-2099; we accept a little more.
YEAR_MIN: Final = 1970
YEAR_MAX: Final = 2199

#: How many years past the start of a search we look before deciding "never".
SEARCH_YEARS: Final = 400

#: No search goes past this year (the time engine's last slot, see model/bounds.py).
SEARCH_LAST_YEAR: Final = LAST_SLOT_YEAR

MONTH_NAMES: Final = (
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "MAY",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "OCT",
    "NOV",
    "DEC",
)
#: Python weekday numbering (Monday = 0) of each three-letter name.
DAY_NAMES: Final = {"MON": 0, "TUE": 1, "WED": 2, "THU": 3, "FRI": 4, "SAT": 5, "SUN": 6}
WEEKDAY_WORDS: Final = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
)

MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_DAYS_IN_MONTH: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MAX_DAYS_IN_MONTH: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_TOKEN_RE: Final = re.compile(r"\S+")
_INT_RE: Final = re.compile(r"\d+")


class CronSyntaxError(ValueError):
    """An expression that is not valid cron.

    ``message`` says what is wrong, ``column`` is the 1-based column in the expression where
    the bad part starts, and ``field`` names the field at fault (``"minute"``,
    ``"day-of-week"``, ... or ``"expression"`` for a problem with the whole expression).
    """

    def __init__(self, message: str, column: int, field: str) -> None:
        super().__init__(f"{message} (column {column}, {field} field)")
        self.message = message
        self.column = column
        self.field = field


def days_in_month(year: int, month: int) -> int:
    """The number of days of ``month`` in ``year`` (Gregorian)."""
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month]


#: (weekday of the 1st, days in the month) by ``year * 16 + month``: the two facts a
#: :class:`DayRule` needs, looked up once instead of built from a ``date`` on every search.
_MONTH_SHAPES: dict[int, tuple[int, int]] = {}


def month_shape(year: int, month: int) -> tuple[int, int]:
    """The weekday of the 1st (Monday = 0) and the number of days of ``month`` in ``year``."""
    key = year * 16 + month
    got = _MONTH_SHAPES.get(key)
    if got is None:
        if len(_MONTH_SHAPES) >= 65536:
            _MONTH_SHAPES.clear()
        got = _MONTH_SHAPES[key] = (date(year, month, 1).weekday(), days_in_month(year, month))
    return got


#: Interned frozensets of value tuples, so that expressions share them.
_SETS: dict[tuple[int, ...], frozenset[int]] = {}


def _frozen(values: tuple[int, ...]) -> frozenset[int]:
    got = _SETS.get(values)
    if got is None:
        if len(_SETS) >= 4096:
            _SETS.clear()
        got = _SETS[values] = frozenset(values)
    return got


@dataclass(frozen=True, slots=True)
class Item:
    """One element of a field's list, kept for :mod:`explain`.

    ``kind`` is one of ``all`` (``*``), ``any`` (``?``), ``value``, ``range`` (``start`` to
    ``end``, possibly wrapping, every ``step``), ``last`` (``L`` / ``L-n``, offset in
    ``start``), ``last-weekday`` (``LW`` / ``L-nW``), ``nearest-weekday`` (``nW``),
    ``nth`` (weekday ``start``, occurrence ``end``), ``last-dow`` (``nL``). Weekdays are stored
    as Python weekdays (Monday = 0).
    """

    kind: str
    start: int = 0
    end: int = 0
    step: int = 1


class DayRule:
    """Which days of a month match, as a function of (weekday of the 1st, days in the month).

    Modes: ``all``; ``dom`` (day-of-month set); ``dow`` (weekday set); ``or`` (Vixie: either
    set); ``and`` (both sets); ``last`` (``L-n``); ``last-weekday`` (``L-nW``);
    ``nearest`` (``nW``); ``nth`` (``n#k``); ``last-dow`` (``nL``). Answers are cached: there
    are at most 28 distinct months.
    """

    __slots__ = ("_cache", "dom", "dow", "k", "mode", "n")

    def __init__(
        self,
        mode: str,
        dom: frozenset[int] = frozenset(),
        dow: frozenset[int] = frozenset(),
        n: int = 0,
        k: int = 0,
    ) -> None:
        self.mode = mode
        self.dom = dom
        self.dow = dow
        self.n = n
        self.k = k
        self._cache: dict[int, tuple[int, ...]] = {}

    def days(self, first_weekday: int, ldom: int) -> tuple[int, ...]:
        key = first_weekday * 32 + ldom
        got = self._cache.get(key)
        if got is None:
            got = self._cache[key] = self._compute(first_weekday, ldom)
        return got

    def _compute(self, fw: int, ldom: int) -> tuple[int, ...]:
        mode = self.mode
        if mode == "all":
            return tuple(range(1, ldom + 1))
        if mode == "dom":
            return tuple(d for d in range(1, ldom + 1) if d in self.dom)
        if mode == "dow":
            return tuple(d for d in range(1, ldom + 1) if (fw + d - 1) % 7 in self.dow)
        if mode == "or":
            return tuple(
                d for d in range(1, ldom + 1) if d in self.dom or (fw + d - 1) % 7 in self.dow
            )
        if mode == "and":
            return tuple(
                d for d in range(1, ldom + 1) if d in self.dom and (fw + d - 1) % 7 in self.dow
            )
        if mode == "last":
            d = ldom - self.n
            return (d,) if d >= 1 else ()
        if mode == "last-weekday":
            return _nearest_weekday(ldom - self.n, fw, ldom)
        if mode == "nearest":
            return _nearest_weekday(self.n, fw, ldom)
        if mode == "nth":
            first = 1 + (self.n - fw) % 7
            d = first + 7 * (self.k - 1)
            return (d,) if d <= ldom else ()
        if mode == "last-dow":
            first = 1 + (self.n - fw) % 7
            return (first + 7 * ((ldom - first) // 7),)
        raise AssertionError(mode)


def _nearest_weekday(v: int, fw: int, ldom: int) -> tuple[int, ...]:
    """Quartz's ``W``: the weekday nearest day ``v`` without leaving the month.

    ``v`` may lie outside the month (``31W`` in June, ``L-30W`` in February): like Quartz we
    take the weekday of that virtual date, move Saturday back and Sunday forward, and fire
    only when the result lies inside the month.
    """
    wd = (fw + v - 1) % 7
    if wd == 5:
        v = v + 2 if v == 1 else v - 1
    elif wd == 6:
        v = v - 2 if v == ldom else v + 1
    return (v,) if 1 <= v <= ldom else ()


_NO_ITEMS: Final[Mapping[str, tuple[Item, ...]]] = MappingProxyType({})


@dataclass(eq=False, slots=True)
class CronExpression:
    """A parsed cron expression: sorted value tuples per field plus a :class:`DayRule`.

    ``seconds``/``minutes``/``hours``/``months`` are sorted tuples; ``years`` is a sorted tuple
    or None (any year). ``fixed_time`` is True when the second, minute and hour fields hold no
    ``*`` (nor a bare Quartz ``/n``, which means ``*/n``): such schedules follow the fixed-time
    DST rule. :attr:`items` gives each field's list for :mod:`explain`; ``never`` holds a reason
    when a static check proves that no date can ever match (``0 0 30 2 *``).
    """

    expression: str
    dialect: Dialect
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    years: tuple[int, ...] | None
    day_rule: DayRule
    fixed_time: bool
    never: str | None = None
    #: The items of the time fields and of the date fields (shared between expressions).
    time_items: Mapping[str, tuple[Item, ...]] = field(default_factory=lambda: _NO_ITEMS)
    date_items: Mapping[str, tuple[Item, ...]] = field(default_factory=lambda: _NO_ITEMS)
    _month_set: frozenset[int] = field(init=False, repr=False)
    _year_set: frozenset[int] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._month_set = _frozen(self.months)
        self._year_set = _frozen(self.years) if self.years is not None else None

    @property
    def items(self) -> dict[str, tuple[Item, ...]]:
        """Each field's list of items by field name, in field order (for :mod:`explain`)."""
        return {**self.time_items, **self.date_items}

    # -- matching -------------------------------------------------------------------------

    def next_tod(self, h: int, mi: int, s: int) -> tuple[int, int, int] | None:
        """The first matching (hour, minute, second) at or after the given one, same day.

        Out-of-range inputs (``s == 60``) are fine: they simply carry to the next minute.
        """
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        i = bisect_left(hours, h)
        if i == len(hours):
            return None
        if hours[i] != h:
            return hours[i], minutes[0], seconds[0]
        j = bisect_left(minutes, mi)
        if j < len(minutes):
            if minutes[j] != mi:
                return h, minutes[j], seconds[0]
            k = bisect_left(seconds, s)
            if k < len(seconds):
                return h, mi, seconds[k]
            if j + 1 < len(minutes):
                return h, minutes[j + 1], seconds[0]
        if i + 1 < len(hours):
            return hours[i + 1], minutes[0], seconds[0]
        return None

    def next_local(
        self, y: int, mo: int, d: int, h: int, mi: int, s: int
    ) -> tuple[int, int, int, int, int, int] | None:
        """The first matching local wall-clock time at or after ``y-mo-d h:mi:s``.

        Fields may overflow by one unit (``s == 60``, ``h == 24``); the search carries. Returns
        None when nothing matches within :data:`SEARCH_YEARS` years or the year field runs out,
        and after :data:`SEARCH_LAST_YEAR`.
        """
        if self.never is not None:
            return None
        years = self.years
        year_set = self._year_set
        months = self.months
        month_set = self._month_set
        rule = self.day_rule
        ymax = min(years[-1] if years is not None else y + SEARCH_YEARS, SEARCH_LAST_YEAR)
        while True:
            if y > ymax:
                return None
            if year_set is not None and y not in year_set:
                i = bisect_left(years, y)  # type: ignore[arg-type]
                if i == len(years):  # type: ignore[arg-type]
                    return None
                y = years[i]  # type: ignore[index]
                mo, d, h, mi, s = 1, 1, 0, 0, 0
            if mo not in month_set:
                i = bisect_left(months, mo)
                if i == len(months):
                    y, mo, d, h, mi, s = y + 1, 1, 1, 0, 0, 0
                    continue
                mo, d, h, mi, s = months[i], 1, 0, 0, 0
            days = rule.days(*month_shape(y, mo))
            i = bisect_left(days, d)
            if i < len(days):
                if days[i] != d:
                    d, h, mi, s = days[i], 0, 0, 0
                tod = self.next_tod(h, mi, s)
                if tod is not None:
                    return y, mo, d, tod[0], tod[1], tod[2]
                if i + 1 < len(days):  # the next matching day, at its first matching time
                    return y, mo, days[i + 1], self.hours[0], self.minutes[0], self.seconds[0]
            # no (further) matching day in this month
            if mo == 12:
                y, mo = y + 1, 1
            else:
                mo += 1
            d, h, mi, s = 1, 0, 0, 0

    def matches_date(self, y: int, mo: int, d: int) -> bool:
        """Whether the local date ``y-mo-d`` is one of the expression's days."""
        if mo not in self._month_set:
            return False
        if self._year_set is not None and y not in self._year_set:
            return False
        days = self.day_rule.days(*month_shape(y, mo))
        return d in days


# ---------------------------------------------------------------------------------------------
# parsing


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    lo: int
    hi: int
    names: dict[str, int] | None


_MONTH_MAP: Final = {n: i + 1 for i, n in enumerate(MONTH_NAMES)}
#: Quartz day-of-week numbers 1=SUN..7=SAT by name; Unix 0=SUN..6=SAT.
_QUARTZ_DOW_MAP: Final = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_UNIX_DOW_MAP: Final = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}

_QUARTZ_SPECS: Final = {
    SECOND: _Spec(SECOND, 0, 59, None),
    MINUTE: _Spec(MINUTE, 0, 59, None),
    HOUR: _Spec(HOUR, 0, 23, None),
    DOM: _Spec(DOM, 1, 31, None),
    MONTH: _Spec(MONTH, 1, 12, _MONTH_MAP),
    DOW: _Spec(DOW, 1, 7, _QUARTZ_DOW_MAP),
    YEAR: _Spec(YEAR, YEAR_MIN, YEAR_MAX, None),
}
_UNIX_SPECS: Final = {
    MINUTE: _Spec(MINUTE, 0, 59, None),
    HOUR: _Spec(HOUR, 0, 23, None),
    DOM: _Spec(DOM, 1, 31, None),
    MONTH: _Spec(MONTH, 1, 12, _MONTH_MAP),
    DOW: _Spec(DOW, 0, 7, _UNIX_DOW_MAP),
}
#: Quartz's limits on ``*/n`` and ``a/n`` increments (it checks no others).
_QUARTZ_MAX_INCREMENT: Final = {SECOND: 59, MINUTE: 59, HOUR: 23, DOM: 31, MONTH: 12, DOW: 7}


class _Field:
    """The parse of one field: its values, items and special day forms."""

    __slots__ = ("frozen", "item_tuple", "items", "sorted", "star", "values", "wild")

    def __init__(self) -> None:
        self.values: set[int] = set()
        self.items: list[Item] = []
        self.star = False  # the field starts with '*' (Vixie's "unrestricted")
        self.sorted: tuple[int, ...] = ()
        self.frozen: frozenset[int] = frozenset()
        self.item_tuple: tuple[Item, ...] = ()
        self.wild = False  # holds '*' or a bare Quartz '/n' (for the DST rule)

    def finish(self, token: str) -> _Field:
        self.sorted = tuple(sorted(self.values))
        self.frozen = frozenset(self.values)
        self.item_tuple = tuple(self.items)
        self.wild = "*" in token or any(p.startswith("/") for p in token.split(","))
        return self


def _fail(message: str, column: int, field_name: str) -> CronSyntaxError:
    return CronSyntaxError(message, column, field_name)


def _number(text: str, spec: _Spec, dialect: Dialect, col: int, allow_names: bool) -> int:
    """One value: a decimal number or (month and weekday fields) a three-letter name."""
    if _INT_RE.fullmatch(text):
        return int(text)
    if spec.names is not None and allow_names:
        upper = text.upper()
        if upper in spec.names:
            return spec.names[upper]
        if len(text) > 3 and upper[:3] in spec.names and text.isalpha():
            raise _fail(
                f"{text!r} is not a {spec.name} name: use the three-letter form {upper[:3]!r}",
                col,
                spec.name,
            )
        what = "month" if spec.name == MONTH else "day-of-week"
        names = ", ".join(spec.names)
        raise _fail(f"{text!r} is not a {what} name: use one of {names}", col, spec.name)
    if not text:
        raise _fail(f"a value is missing in the {spec.name} field", col, spec.name)
    raise _fail(f"{text!r} is not a number", col, spec.name)


def _check_range(v: int, spec: _Spec, col: int, dialect: Dialect) -> None:
    if not spec.lo <= v <= spec.hi:
        extra = ""
        if spec.name == DOW and dialect == "quartz" and v == 0:
            extra = " (Quartz numbers days 1=SUN..7=SAT; 0 is Unix numbering)"
        raise _fail(
            f"{spec.name} value {v} is out of range {spec.lo}-{spec.hi}{extra}", col, spec.name
        )


def _expand(start: int, end: int, step: int, spec: _Spec) -> list[int]:
    """Values ``start..end`` every ``step``; ``end < start`` wraps around like Quartz."""
    if end >= start:
        return list(range(start, end + 1, step))
    span = spec.hi - spec.lo + 1
    out = []
    for i in range(start, end + span + 1, step):
        v = i if i <= spec.hi else i - span
        out.append(v)
    return out


def _parse_plain_item(
    text: str, spec: _Spec, dialect: Dialect, col: int, out: _Field, is_first: bool
) -> None:
    """``*``, ``*/n``, ``/n`` (Quartz), ``a``, ``a-b``, ``a/n``, ``a-b/n``."""
    name = spec.name
    base, slash, step_text = text.partition("/")
    step = 1
    if slash:
        if not step_text:
            raise _fail("'/' must be followed by a step (a number)", col + len(base), name)
        if not _INT_RE.fullmatch(step_text):
            raise _fail(f"step {step_text!r} is not a number", col + len(base) + 1, name)
        step = int(step_text)
        if step == 0:
            raise _fail("a step of 0 never advances: use a step of 1 or more", col, name)
    if base == "*" or (base == "" and slash and dialect == "quartz"):
        if is_first:
            out.star = True
        if slash and dialect == "quartz":
            limit = _QUARTZ_MAX_INCREMENT.get(name)
            if limit is not None and step > limit:
                raise _fail(
                    f"step {step} is larger than the {name} field allows ({limit})", col, name
                )
        start, end = spec.lo, spec.hi
        if name == YEAR:
            start = YEAR_MIN
        vals = list(range(start, end + 1, step))
        out.values.update(vals)
        out.items.append(Item("all" if not slash else "range", start, end, step))
        return
    if base == "":
        raise _fail(f"a value is missing before '/' in the {name} field", col, name)
    lo_text, dash, hi_text = base.partition("-")
    named = not _INT_RE.fullmatch(lo_text) or (dash and not _INT_RE.fullmatch(hi_text))
    if named and slash and dialect == "quartz":
        raise _fail(
            f"Quartz ignores a step after a name ({text!r}); list the values instead",
            col,
            name,
        )
    start = _number(lo_text, spec, dialect, col, True)
    _check_range(start, spec, col, dialect)
    if dash:
        if not hi_text:
            raise _fail(f"range {base!r} has no end", col, name)
        end = _number(hi_text, spec, dialect, col + len(lo_text) + 1, True)
        _check_range(end, spec, col + len(lo_text) + 1, dialect)
        if end < start:
            if dialect == "unix":
                raise _fail(
                    f"range {base!r} runs backwards; write it as two ranges",
                    col,
                    name,
                )
            if name == YEAR:
                raise _fail(f"year range {base!r} runs backwards", col, name)
        out.values.update(_expand(start, end, step, spec))
        out.items.append(Item("range", start, end, step))
        return
    if slash:
        if dialect == "quartz":
            limit = _QUARTZ_MAX_INCREMENT.get(name)
            if limit is not None and step > limit:
                raise _fail(
                    f"step {step} is larger than the {name} field allows ({limit})", col, name
                )
        end = spec.hi
        out.values.update(range(start, end + 1, step))
        out.items.append(Item("range", start, end, step))
        return
    out.values.add(start)
    out.items.append(Item("value", start, start))


def _quartz_dow(v: int) -> int:
    """Quartz day-of-week (1=SUN..7=SAT) to Python weekday (Monday = 0)."""
    return (v + 5) % 7


def _unix_dow(v: int) -> int:
    """Unix day-of-week (0 or 7 = SUN) to Python weekday (Monday = 0)."""
    return (v + 6) % 7


_LAST_DOM_RE: Final = re.compile(r"L(?:-(\d+))?(W)?")
_NEAREST_RE: Final = re.compile(r"(\d+)W")
_NTH_RE: Final = re.compile(r"([0-9A-Za-z]+)#(.*)")
_LAST_DOW_RE: Final = re.compile(r"([0-9A-Za-z]+?)L")


def _split_items(token: str, col: int) -> list[tuple[str, int]]:
    out = []
    pos = 0
    for part in token.split(","):
        out.append((part, col + pos))
        pos += len(part) + 1
    return out


def _parse_field(
    token: str, spec: _Spec, dialect: Dialect, col: int
) -> tuple[_Field, DayRule | None]:
    """Parse one field. For Quartz day fields returns a special :class:`DayRule` if any."""
    name = spec.name
    out = _Field()
    parts = _split_items(token, col)
    special: DayRule | None = None
    for index, (text, pcol) in enumerate(parts):
        if text == "":
            raise _fail(f"empty element in the {name} list", pcol, name)
        upper = text.upper()
        if dialect == "quartz" and name in (DOM, DOW):
            if upper.startswith("?"):
                if upper != "?":
                    raise _fail(f"unexpected {text[1:]!r} after '?'", pcol + 1, name)
                if len(parts) > 1:
                    raise _fail("'?' cannot be part of a list", pcol, name)
                out.items.append(Item("any"))
                return out, DayRule("any")
            if (name == DOM and "L" in upper) or (name == DOM and upper.endswith("W")):
                rule = _quartz_dom_special(upper, pcol, len(parts) > 1)
                if rule is not None:
                    out.items.append(_rule_item(rule))
                    special = rule
                    continue
            if name == DOW and ("#" in upper or upper.endswith("L")):
                if len(parts) > 1:
                    what = "'#'" if "#" in upper else "'L'"
                    raise _fail(
                        f"{what} cannot be combined with other days in a list "
                        "(Quartz would use only one of them)",
                        pcol,
                        name,
                    )
                if upper == "L":  # 'L' alone in day-of-week means Saturday
                    out.values.add(5)
                    out.items.append(Item("value", 5, 5))
                    continue
                rule = _quartz_dow_special(text, spec, pcol)
                out.items.append(_rule_item(rule))
                special = rule
                continue
        if (dialect == "unix" and any(c in upper for c in "?#")) or (
            dialect == "unix" and name in (DOM, DOW) and upper in ("L", "LW")
        ):
            raise _fail(
                f"{text!r} is Quartz syntax; Unix cron has no '?', 'L', 'W' or '#' "
                "(use a 6-field Quartz expression)",
                pcol,
                name,
            )
        if dialect == "quartz" and name not in (DOM, DOW) and "?" in upper:
            raise _fail("'?' is only allowed in the day-of-month or day-of-week field", pcol, name)
        if not re.fullmatch(r"[0-9A-Za-z*/\-]+", text):
            bad = next(c for c in text if not (c.isalnum() or c in "*/-"))
            raise _fail(f"unexpected character {bad!r}", pcol + text.index(bad), name)
        if "*" in text and not (text == "*" or text.startswith("*/")):
            raise _fail(f"{text!r}: '*' stands alone or as '*/step'", pcol, name)
        raw = _Field()
        _parse_plain_item(text, spec, dialect, pcol, raw, index == 0)
        if index == 0:
            out.star = raw.star
        if name == DOW:
            conv = _quartz_dow if dialect == "quartz" else _unix_dow
            out.values.update(conv(v) for v in raw.values)
        else:
            out.values.update(raw.values)
        out.items.extend(raw.items)
    if special is not None and len(parts) > 1:
        raise _fail(f"special day forms cannot be part of a list in the {name} field", col, name)
    return out, special


def _rule_item(rule: DayRule) -> Item:
    return Item(rule.mode, rule.n, rule.k)


def _quartz_dom_special(upper: str, col: int, in_list: bool) -> DayRule | None:
    m = _LAST_DOM_RE.fullmatch(upper)
    if m:
        if in_list:
            raise _fail("'L' cannot be combined with other days of the month in a list", col, DOM)
        offset = int(m.group(1)) if m.group(1) is not None else 0
        if offset > 30:
            raise _fail("the offset from the last day (L-n) must be 30 or less", col, DOM)
        return DayRule("last-weekday" if m.group(2) else "last", n=offset)
    m = _NEAREST_RE.fullmatch(upper)
    if m:
        if in_list:
            raise _fail(
                "'W' cannot be part of a list (Quartz would use only the first W day)",
                col,
                DOM,
            )
        n = int(m.group(1))
        if not 1 <= n <= 31:
            raise _fail(f"'{n}W': the day before W must be 1-31", col, DOM)
        return DayRule("nearest", n=n)
    if upper.startswith("L"):
        raise _fail(f"{upper!r}: after 'L' only '-n' and 'W' may follow", col, DOM)
    if "L" in upper:
        raise _fail(
            f"{upper!r}: 'nL' is a day-of-week form; in day-of-month write L or L-n", col, DOM
        )
    if upper.endswith("W"):
        raise _fail(f"{upper!r}: 'W' follows a single day number (15W) or L (LW)", col, DOM)
    return None


def _quartz_dow_special(text: str, spec: _Spec, col: int) -> DayRule:
    upper = text.upper()
    m = _NTH_RE.fullmatch(upper)
    if m:
        day = _number(m.group(1), spec, "quartz", col, True)
        _check_range(day, spec, col, "quartz")
        k_text = m.group(2)
        if not _INT_RE.fullmatch(k_text) or not 1 <= int(k_text) <= 5:
            raise _fail(
                "'#' must be followed by a number 1-5 (the occurrence in the month)",
                col + len(m.group(1)) + 1,
                DOW,
            )
        return DayRule("nth", n=_quartz_dow(day), k=int(k_text))
    m = _LAST_DOW_RE.fullmatch(upper)
    if m:
        day = _number(m.group(1), spec, "quartz", col, True)
        _check_range(day, spec, col, "quartz")
        return DayRule("last-dow", n=_quartz_dow(day))
    raise _fail(f"{text!r}: 'L' in day-of-week follows one day (6L, FRIL)", col, DOW)


_CACHE: dict[str, CronExpression] = {}
#: Parsed fields by (dialect, field, token): far fewer distinct tokens than expressions.
_FIELD_CACHE: dict[tuple[str, str, str], tuple[_Field, DayRule | None]] = {}
#: Shared day rules, so that their per-month answers are computed once for all expressions.
_RULES: dict[tuple[str, frozenset[int], frozenset[int]], DayRule] = {}


def _rule(
    mode: str, dom: frozenset[int] = frozenset(), dow: frozenset[int] = frozenset()
) -> DayRule:
    key = (mode, dom, dow)
    got = _RULES.get(key)
    if got is None:
        if len(_RULES) >= 4096:
            _RULES.clear()
        got = _RULES[key] = DayRule(mode, dom=dom, dow=dow)
    return got


_CACHE_MAX: Final = 65536


def clear_caches() -> None:
    """Forget every parse (for benchmarks and tests that want a cold start)."""
    for cache in (_CACHE, _FIELD_CACHE, _RULES, _TIME_PARTS, _DATE_PARTS, _MONTH_SHAPES, _SETS):
        cache.clear()


def parse_cron(expr: str) -> CronExpression:
    """Parse a Unix (5 fields or a macro) or Quartz (6-7 fields) expression.

    Raises :class:`CronSyntaxError`. Results are cached by the exact text.
    """
    got = _CACHE.get(expr)
    if got is not None:
        return got
    parsed = _parse(expr)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[expr] = parsed
    return parsed


def _columns(expr: str) -> list[int]:
    """The 1-based column of each whitespace-separated token (only needed for messages)."""
    return [m.start() + 1 for m in _TOKEN_RE.finditer(expr)]


def _parse(expr: str) -> CronExpression:
    if not isinstance(expr, str):
        raise CronSyntaxError("a cron expression must be a string", 1, "expression")
    stripped = expr.strip()
    if stripped.startswith("@"):
        key = stripped.lower()
        if key == "@reboot":
            raise _fail(
                "@reboot is not a schedule: reconciler fires on time, not at boot",
                expr.index("@") + 1,
                "expression",
            )
        if key not in MACROS:
            raise _fail(
                f"unknown macro {stripped!r}: use one of {', '.join(MACROS)}",
                expr.index("@") + 1,
                "expression",
            )
        inner = _parse_fields(MACROS[key], "unix", MACROS[key].split())
        inner.expression = expr
        return inner
    # str.split() and the \S+ of _TOKEN_RE agree on what whitespace is
    tokens = expr.split()
    n = len(tokens)
    if n == 0:
        raise _fail("the expression is empty", 1, "expression")
    if n == 5:
        return _parse_fields(expr, "unix", tokens)
    if n in (6, 7):
        return _parse_fields(expr, "quartz", tokens)
    if n > 7:
        raise _fail(
            f"{n} fields: Quartz takes at most 7 (it would silently ignore the rest)",
            _columns(expr)[7],
            "expression",
        )
    raise _fail(
        f"{n} field{'s' if n != 1 else ''}: expected 5 (Unix: minute hour day-of-month month "
        "day-of-week) or 6-7 (Quartz: second minute hour day-of-month month day-of-week "
        "[year])",
        len(expr.rstrip()) + 1 if expr.strip() else 1,
        "expression",
    )


@dataclass(frozen=True, slots=True)
class _TimePart:
    """The time-of-day fields of an expression (second, minute, hour)."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    fixed_time: bool
    items: Mapping[str, tuple[Item, ...]]


@dataclass(frozen=True, slots=True)
class _DatePart:
    """The date fields of an expression (day-of-month, month, day-of-week, year)."""

    months: tuple[int, ...]
    years: tuple[int, ...] | None
    day_rule: DayRule
    never: str | None
    items: Mapping[str, tuple[Item, ...]]


#: Expressions share their time and date parts: the bench's 50,000 distinct expressions have
#: about 10,000 distinct time parts and a few hundred date parts. Keyed by (dialect, *tokens).
_TIME_PARTS: dict[tuple[str, ...], _TimePart] = {}
_DATE_PARTS: dict[tuple[str, ...], _DatePart] = {}


def _parse_fields(expr: str, dialect: Dialect, tokens: list[str]) -> CronExpression:
    """An expression from its 5-7 tokens: a cached time part plus a cached date part."""
    split = 3 if dialect == "quartz" else 2  # the time fields come first
    time_key = (dialect, *tokens[:split])
    times = _TIME_PARTS.get(time_key)
    if times is None:
        times = _time_part(expr, dialect, tokens[:split])
        if len(_TIME_PARTS) >= _CACHE_MAX:
            _TIME_PARTS.clear()
        _TIME_PARTS[time_key] = times
    date_key = (dialect, *tokens[split:])
    dates = _DATE_PARTS.get(date_key)
    if dates is None:
        dates = _date_part(expr, dialect, tokens, split)
        if len(_DATE_PARTS) >= _CACHE_MAX:
            _DATE_PARTS.clear()
        _DATE_PARTS[date_key] = dates
    return CronExpression(
        expression=expr,
        dialect=dialect,
        seconds=times.seconds,
        minutes=times.minutes,
        hours=times.hours,
        months=dates.months,
        years=dates.years,
        day_rule=dates.day_rule,
        fixed_time=times.fixed_time,
        never=dates.never,
        time_items=times.items,
        date_items=dates.items,
    )


def _fields(
    expr: str, dialect: Dialect, tokens: list[str], first: int
) -> dict[str, tuple[_Field, DayRule | None]]:
    """Parse ``tokens`` as the fields from index ``first`` on, each cached by its token."""
    names = QUARTZ_FIELDS if dialect == "quartz" else UNIX_FIELDS
    specs = _QUARTZ_SPECS if dialect == "quartz" else _UNIX_SPECS
    out: dict[str, tuple[_Field, DayRule | None]] = {}
    for index, token in enumerate(tokens, first):
        name = names[index]
        key = (dialect, name, token)
        got = _FIELD_CACHE.get(key)
        if got is None:
            f, special = _parse_field(token, specs[name], dialect, _columns(expr)[index])
            got = (f.finish(token), special)
            if len(_FIELD_CACHE) >= _CACHE_MAX:
                _FIELD_CACHE.clear()
            _FIELD_CACHE[key] = got
        out[name] = got
    return out


def _time_part(expr: str, dialect: Dialect, tokens: list[str]) -> _TimePart:
    fields = {name: f for name, (f, _) in _fields(expr, dialect, tokens, 0).items()}
    seconds = fields[SECOND].sorted if dialect == "quartz" else (0,)
    return _TimePart(
        seconds=seconds,
        minutes=fields[MINUTE].sorted,
        hours=fields[HOUR].sorted,
        fixed_time=not any(f.wild for f in fields.values()),
        items=MappingProxyType({name: f.item_tuple for name, f in fields.items()}),
    )


def _date_part(expr: str, dialect: Dialect, tokens: list[str], first: int) -> _DatePart:
    parsed = _fields(expr, dialect, tokens[first:], first)
    fields = {name: f for name, (f, _) in parsed.items()}
    specials = {name: special for name, (_, special) in parsed.items()}

    if dialect == "quartz":
        dom_any = specials[DOM] is not None and specials[DOM].mode == "any"
        dow_any = specials[DOW] is not None and specials[DOW].mode == "any"
        if dom_any and dow_any:
            raise _fail(
                "'?' in both day fields: one of day-of-month or day-of-week must say which days",
                _columns(expr)[5],
                DOW,
            )
        if not dom_any and not dow_any:
            raise _fail(
                "Quartz needs '?' in day-of-month or day-of-week (it cannot combine both); "
                "for example '0 0 12 ? * MON' or '0 0 12 1 * ?'",
                _columns(expr)[5],
                DOW,
            )
        if dom_any:
            rule = specials[DOW] or _rule("dow", dow=fields[DOW].frozen)
            if rule.mode == "dow" and len(rule.dow) == 7:
                rule = _rule("all")
        else:
            rule = specials[DOM] or _rule("dom", dom=fields[DOM].frozen)
            if rule.mode == "dom" and len(rule.dom) == 31:
                rule = _rule("all")
        year_field = fields.get(YEAR)
        years = (
            None
            if year_field is None or (year_field.star and year_field.items[0].step == 1)
            else year_field.sorted
        )
    else:
        dom_f, dow_f = fields[DOM], fields[DOW]
        dom_set = dom_f.frozen
        dow_set = dow_f.frozen
        if dom_f.star and dow_f.star:
            rule = (
                _rule("all")
                if len(dom_set) == 31 and len(dow_set) == 7
                else _rule("and", dom_set, dow_set)
            )
        elif dom_f.star:
            rule = (
                _rule("dow", dow=dow_set) if len(dom_set) == 31 else _rule("and", dom_set, dow_set)
            )
        elif dow_f.star:
            rule = (
                _rule("dom", dom=dom_set) if len(dow_set) == 7 else _rule("and", dom_set, dow_set)
            )
        else:
            rule = _rule("or", dom_set, dow_set)
        years = None

    months = fields[MONTH].sorted
    return _DatePart(
        months=months,
        years=years,
        day_rule=rule,
        never=_never_reason(months, rule, years),
        items=MappingProxyType({name: f.item_tuple for name, f in fields.items()}),
    )


def _never_reason(
    months: tuple[int, ...], rule: DayRule, years: tuple[int, ...] | None
) -> str | None:
    """A reason why no date can ever match, found without searching; None if one may.

    Every month has at least 29 days in some year, so only days from 30 on need the search
    over ``months``.
    """
    if rule.mode in ("dom", "and") and rule.dom:
        first = min(rule.dom)
        if first > 29 and first > max(_MAX_DAYS_IN_MONTH[m] for m in months):
            days = ", ".join(str(d) for d in sorted(rule.dom))
            names = ", ".join(MONTH_NAMES[m - 1].title() for m in months)
            return f"day {days} never occurs in {names}"
    if (
        rule.mode == "nearest"
        and rule.n > 30
        and all(rule.n > _MAX_DAYS_IN_MONTH[m] + 1 for m in months)
    ):
        names = ", ".join(MONTH_NAMES[m - 1].title() for m in months)
        return f"day {rule.n} never occurs in {names}"
    if years is not None and not years:
        return "the year field matches no year"
    return None


def build_calendar(
    *,
    second: int,
    minute: int,
    hour: int,
    rule: DayRule,
    months: tuple[int, ...] = tuple(range(1, 13)),
    label: str,
) -> CronExpression:
    """A fixed-time expression for the calendar forms (daily/weekly/monthly/yearly)."""
    return CronExpression(
        expression=label,
        dialect="quartz",
        seconds=(second,),
        minutes=(minute,),
        hours=(hour,),
        months=months,
        years=None,
        day_rule=rule,
        fixed_time=True,
        never=_never_reason(months, rule, None),
    )
