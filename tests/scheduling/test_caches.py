"""The caches behind the cold first-fire goal never change an answer.

Expressions share cached time and date parts, tokens are split without a regex, and each zone
remembers resolved wall-clock times and the wall clock of the last instant asked about. These
tests compare each shortcut with the plain computation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reconciler.scheduling import CronSyntaxError, parse_cron
from reconciler.scheduling import cron as cron_module
from reconciler.scheduling import zones as zones_module
from reconciler.scheduling.cron import DOM, DOW, HOUR, MINUTE, MONTH, SECOND, YEAR
from reconciler.scheduling.zones import get_zone

from .conftest import iso, trigger


def test_expressions_sharing_parts_keep_their_own_text_and_items() -> None:
    a = parse_cron("5 4 * * *")
    b = parse_cron("5 4 1 * *")  # same time part, other date part
    c = parse_cron("7 4 1 * *")  # other time part, same date part as b
    assert (a.expression, b.expression, c.expression) == ("5 4 * * *", "5 4 1 * *", "7 4 1 * *")
    assert (a.minutes, b.minutes, c.minutes) == ((5,), (5,), (7,))
    assert (a.day_rule.mode, b.day_rule.mode, c.day_rule.mode) == ("all", "dom", "dom")
    assert list(b.items) == [MINUTE, HOUR, DOM, MONTH, DOW]
    assert [i.start for i in c.items[MINUTE]] == [7]
    q = parse_cron("0 15 10 ? * MON-FRI 2030")
    assert list(q.items) == [SECOND, MINUTE, HOUR, DOM, MONTH, DOW, YEAR]
    assert q.years == (2030,)


def test_a_macro_keeps_its_own_text() -> None:
    assert parse_cron("@daily").expression == "@daily"
    assert parse_cron("0 0 * * *").expression == "0 0 * * *"
    assert parse_cron("@daily").day_rule is parse_cron("0 0 * * *").day_rule


@pytest.mark.parametrize(
    ("warm", "expr", "column", "field"),
    [
        # the time part is cached; the date part is new and wrong
        ("0 0 * * *", "0   0  *  *  5X", 14, DOW),
        # the date part is cached; the time part is new and wrong
        ("0 0 * * *", "61 0 * * *", 1, MINUTE),
        # both parts' tokens are cached, but the Quartz '?' rule fails
        ("0 0 12 ? * MON", "0  0 12   ?  *  ?", 17, DOW),
        # tabs and other Unicode whitespace separate fields, as \\S+ says
        ("0 0 * * *", "0\t0\u00a0*\u3000* 9", 9, DOW),
        ("0 0 * * *", "0 0 * * * * * 1", 15, "expression"),
    ],
)
def test_error_columns_do_not_depend_on_what_is_cached(
    warm: str, expr: str, column: int, field: str
) -> None:
    parse_cron(warm)
    with pytest.raises(CronSyntaxError) as info:
        parse_cron(expr)
    assert (info.value.field, info.value.column) == (field, column), info.value.message
    cron_module.clear_caches()
    with pytest.raises(CronSyntaxError) as cold:
        parse_cron(expr)
    assert (cold.value.field, cold.value.column) == (field, column)


def test_unicode_whitespace_separates_fields() -> None:
    assert parse_cron("30\u00a02\t* *\u2003*").hours == (2,)


def test_a_cold_parse_equals_a_warm_one() -> None:
    exprs = ["0 15 10 ? * MON-FRI", "*/7 * 8-18 ? * 2#3", "0 0 12 LW * ?", "0 0 13 * 5", "@hourly"]
    warm = [parse_cron(e) for e in exprs]
    cron_module.clear_caches()
    cold = [parse_cron(e) for e in exprs]
    for w, c in zip(warm, cold, strict=True):
        assert w is not c
        assert (w.seconds, w.minutes, w.hours, w.months, w.years, w.fixed_time, w.never) == (
            c.seconds,
            c.minutes,
            c.hours,
            c.months,
            c.years,
            c.fixed_time,
            c.never,
        )
        assert (w.day_rule.mode, w.day_rule.dom, w.day_rule.dow) == (
            c.day_rule.mode,
            c.day_rule.dom,
            c.day_rule.dow,
        )
        assert w.items == c.items


def _plain_resolve(info: ZoneInfo, t: datetime) -> int:
    """The fixed-time rule straight from zoneinfo, searching the gap second by second."""

    def offset(dt: datetime) -> int:
        off = dt.utcoffset()
        assert off is not None
        return int(off.total_seconds())

    o0, o1 = offset(t.replace(tzinfo=info)), offset(t.replace(tzinfo=info, fold=1))
    wall = int((t - datetime(1970, 1, 1)).total_seconds())
    if o0 >= o1:  # once, or twice: the first occurrence
        return wall - o0
    lo, hi = wall - o1, wall - o0  # the transition T lies in (lo, hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if offset(datetime.fromtimestamp(mid, info)) == o0:
            lo = mid
        else:
            hi = mid
    return hi


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("America/New_York", "2026-03-08"),
        ("America/New_York", "2026-11-01"),
        ("Australia/Lord_Howe", "2026-10-04"),
        ("Australia/Lord_Howe", "2026-04-05"),
        ("America/Sao_Paulo", "2018-11-04"),
        ("Europe/Berlin", "2026-10-25"),
    ],
)
def test_remembered_wall_clock_times_resolve_as_zoneinfo_says(zone: str, day: str) -> None:
    z = get_zone(zone)
    info = ZoneInfo(zone)
    start = datetime.fromisoformat(day) - timedelta(hours=2)
    for _ in range(2):  # the second pass answers from the zone's memory
        for minute in range(0, 28 * 60, 15):
            t = start + timedelta(minutes=minute)
            got = z.resolve_fixed(t.year, t.month, t.day, t.hour, t.minute, t.second)
            assert got == _plain_resolve(info, t), (zone, t)


def test_gap_times_resolve_to_the_first_instant_after_the_gap_twice() -> None:
    z = get_zone("America/New_York")
    first = z.resolve_fixed(2026, 3, 8, 2, 30, 0)
    assert first == z.resolve_fixed(2026, 3, 8, 2, 30, 0)
    assert datetime.fromtimestamp(first, UTC) == iso("2026-03-08T07:00:00Z")


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Australia/Lord_Howe", "Etc/GMT-14"])
def test_local_fields_are_those_of_zoneinfo_in_any_order(zone: str) -> None:
    z = get_zone(zone)
    info = ZoneInfo(zone)
    base = int(iso("2026-10-03T12:00:00Z").timestamp())
    for ts in [base, base, base + 3600, base, *range(base, base + 3 * 86400, 1799), base]:
        loc = datetime.fromtimestamp(ts, info)
        off = loc.utcoffset()
        assert off is not None
        want = (loc.year, loc.month, loc.day, loc.hour, loc.minute, loc.second)
        assert z.local_fields(ts) == (*want, int(off.total_seconds()))


def test_a_cleared_zone_cache_gives_new_zones_with_the_same_answers() -> None:
    tr = trigger("Europe/Berlin", cron="30 2 * * *")
    before = tr.slots_after(iso("2026-03-27T00:00:00Z"), 4)
    old = get_zone("Europe/Berlin")
    zones_module.clear_caches()
    assert get_zone("Europe/Berlin") is not old
    again = trigger("Europe/Berlin", cron="30 2 * * *")
    assert again.slots_after(iso("2026-03-27T00:00:00Z"), 4) == before


def test_the_next_matching_day_of_the_month_comes_at_its_first_time() -> None:
    # 14:00 on the 1st is past 02:30 and 12:30: the next slot is the 15th at 02:30
    tr = trigger(cron="30 2,12 1,15 * *")
    assert tr.slots_after(iso("2026-06-01T14:00:00Z"), 3) == [
        iso("2026-06-15T02:30:00Z"),
        iso("2026-06-15T12:30:00Z"),
        iso("2026-07-01T02:30:00Z"),
    ]
    # the last matching day of the month is past: on to the next month that has one
    tr = trigger(cron="0 0 12 L * ?")
    assert tr.slots_after(iso("2026-02-28T13:00:00Z"), 2) == [
        iso("2026-03-31T12:00:00Z"),
        iso("2026-04-30T12:00:00Z"),
    ]
