"""Cron grammar: Unix (Vixie) tables, Quartz special forms, and precise errors."""

from __future__ import annotations

import pytest

from reconciler.scheduling import CronSyntaxError, parse_cron

from .conftest import local_isos, trigger

# (expression, after, expected UTC slots), worked out from a calendar (2026-11-01 is a Sunday)
UNIX: list[tuple[str, str, list[str]]] = [
    # OR rule: both day fields restricted -> the 13th *or* any Friday
    (
        "0 0 13 * 5",
        "2026-11-01T00:00:00Z",
        [
            "2026-11-06",
            "2026-11-13",
            "2026-11-20",
            "2026-11-27",
            "2026-12-04",
            "2026-12-11",
            "2026-12-13",
            "2026-12-18",
        ],
    ),
    # a day field starting with '*' is "unrestricted" for Vixie: AND (days 1,11,21,31 on Mondays)
    ("0 0 */10 * 1", "2026-01-01T00:00:00Z", ["2026-05-11", "2026-06-01", "2026-08-31"]),
    # 0 and 7 are both Sunday, and so is the name
    ("0 12 * * 7", "2026-11-01T00:00:00Z", ["2026-11-01", "2026-11-08", "2026-11-15"]),
    ("0 12 * * 0", "2026-11-01T00:00:00Z", ["2026-11-01", "2026-11-08", "2026-11-15"]),
    ("0 12 * * SUN", "2026-11-01T00:00:00Z", ["2026-11-01", "2026-11-08", "2026-11-15"]),
    (
        "0 12 * * 5-7",
        "2026-11-02T00:00:00Z",
        ["2026-11-06", "2026-11-07", "2026-11-08", "2026-11-13"],
    ),
    (
        "0 12 * * 1-7/2",
        "2026-11-02T00:00:00Z",  # 1,3,5,7 = Mon, Wed, Fri, Sun
        ["2026-11-02", "2026-11-04", "2026-11-06", "2026-11-08"],
    ),
    # macros
    ("@weekly", "2026-11-01T00:10:00Z", ["2026-11-08", "2026-11-15"]),
    ("@monthly", "2026-11-01T00:10:00Z", ["2026-12-01", "2027-01-01"]),
    ("@yearly", "2026-11-01T00:10:00Z", ["2027-01-01", "2028-01-01"]),
    ("@annually", "2026-11-01T00:10:00Z", ["2027-01-01", "2028-01-01"]),
    ("@midnight", "2026-11-01T00:10:00Z", ["2026-11-02", "2026-11-03"]),
    ("@daily", "2026-11-01T00:10:00Z", ["2026-11-02", "2026-11-03"]),
    # names, lists and a day-of-month that only some months have
    ("0 9 31 jan,feb,mar *", "2026-01-01T00:00:00Z", ["2026-01-31", "2026-03-31", "2027-01-31"]),
    ("0 0 29 2 *", "2026-01-01T00:00:00Z", ["2028-02-29", "2032-02-29"]),
]


@pytest.mark.parametrize(("expr", "after", "dates"), UNIX, ids=[u[0] for u in UNIX])
def test_unix_expressions_fire_on_the_vixie_days(expr: str, after: str, dates: list[str]) -> None:
    tr = trigger(cron=expr)
    got = [
        s.date().isoformat()
        for s in tr.slots_after(
            __import__("datetime").datetime.fromisoformat(after.replace("Z", "+00:00")), len(dates)
        )
    ]
    assert got == dates


def test_unix_times_of_day_and_steps() -> None:
    assert local_isos(trigger(cron="5/15 * * * *"), "2026-11-01T00:00:00Z", 5) == [
        "2026-11-01T00:05:00+00:00",
        "2026-11-01T00:20:00+00:00",
        "2026-11-01T00:35:00+00:00",
        "2026-11-01T00:50:00+00:00",
        "2026-11-01T01:05:00+00:00",
    ]
    assert local_isos(trigger(cron="@hourly"), "2026-11-01T00:10:00Z", 2) == [
        "2026-11-01T01:00:00+00:00",
        "2026-11-01T02:00:00+00:00",
    ]
    assert local_isos(trigger(cron="0 9-17/4 * * mon-fri"), "2026-11-02T10:00:00Z", 4) == [
        "2026-11-02T13:00:00+00:00",
        "2026-11-02T17:00:00+00:00",
        "2026-11-03T09:00:00+00:00",
        "2026-11-03T13:00:00+00:00",
    ]


def test_five_fields_are_unix_and_six_or_seven_are_quartz() -> None:
    assert parse_cron("0 12 * * *").dialect == "unix"
    assert parse_cron("@daily").dialect == "unix"
    assert parse_cron("0 0 12 * * ?").dialect == "quartz"
    assert parse_cron("0 0 12 * * ? 2030").dialect == "quartz"


def test_quartz_numbers_days_from_sunday_and_unix_from_monday_as_one() -> None:
    q = trigger(cron="0 0 12 ? * 2")  # Quartz 2 = Monday
    u = trigger(cron="0 12 * * 2")  # Unix 2 = Tuesday
    after = "2026-11-01T00:00:00Z"
    assert local_isos(q, after, 1) == ["2026-11-02T12:00:00+00:00"]
    assert local_isos(u, after, 1) == ["2026-11-03T12:00:00+00:00"]


def test_quartz_special_day_forms() -> None:
    after = "2026-12-31T00:00:00Z"
    # nW at month edges: 1W on a Saturday moves forward to Monday the 3rd (never into May)
    assert local_isos(trigger(cron="0 0 9 1W * ?"), "2027-04-15T00:00:00Z", 2) == [
        "2027-05-03T09:00:00+00:00",
        "2027-06-01T09:00:00+00:00",
    ]
    assert local_isos(trigger(cron="0 0 9 L * ?"), after, 3) == [
        "2026-12-31T09:00:00+00:00",
        "2027-01-31T09:00:00+00:00",
        "2027-02-28T09:00:00+00:00",
    ]
    assert local_isos(trigger(cron="0 0 9 ? * FRI#3"), after, 2) == [
        "2027-01-15T09:00:00+00:00",
        "2027-02-19T09:00:00+00:00",
    ]
    assert local_isos(trigger(cron="0 0 9 ? * FRIL"), after, 1) == ["2027-01-29T09:00:00+00:00"]
    # 'L' alone in day-of-week is Saturday
    assert local_isos(trigger(cron="0 0 9 ? * L"), after, 1) == ["2027-01-02T09:00:00+00:00"]
    # wrap-around ranges
    assert local_isos(trigger(cron="0 0 9 ? * FRI-MON"), "2027-01-04T12:00:00Z", 4) == [
        "2027-01-08T09:00:00+00:00",
        "2027-01-09T09:00:00+00:00",
        "2027-01-10T09:00:00+00:00",
        "2027-01-11T09:00:00+00:00",
    ]


# (expression, column, field): what is rejected, where
INVALID: list[tuple[str, int, str]] = [
    ("", 1, "expression"),
    ("* * * *", 8, "expression"),
    ("60 * * * *", 1, "minute"),
    ("* 24 * * *", 3, "hour"),
    ("* * 0 * *", 5, "day-of-month"),
    ("* * * 13 *", 7, "month"),
    ("* * * * 8", 9, "day-of-week"),
    ("5-1 * * * *", 1, "minute"),  # Unix ranges do not wrap
    ("? * * * *", 1, "minute"),
    ("0 0 L * *", 5, "day-of-month"),
    ("0 0 * * MON#2", 9, "day-of-week"),
    ("*/0 * * * *", 1, "minute"),
    ("1,,2 * * * *", 3, "minute"),
    ("@reboot", 1, "expression"),
    ("@every 5m", 1, "expression"),
    ("0 0 12 ? * 8", 12, "day-of-week"),
    ("0 0 25 * * ?", 5, "hour"),
    ("0 0 12 * * *", 12, "day-of-week"),  # Quartz needs '?' in one day field
    ("0 0 12 ? * ?", 12, "day-of-week"),
    ("0 0 12 * * ? 2027 x", 19, "expression"),  # Quartz would ignore the 8th token
    ("0 0 12 ? JAN-DEC/3 *", 10, "month"),  # Quartz would ignore the step
    ("0 0 12 ? * MON-FRI/2", 12, "day-of-week"),
    ("0 0 12 ?5 * MON", 9, "day-of-month"),  # Quartz accepts one stray char after '?'
    ("0 0 12 1W,15W * ?", 8, "day-of-month"),  # Quartz would use only the first W day
    ("0 0 12 ? * MON#2,FRI", 12, "day-of-week"),
    ("0 0 12 ? * MONDAY", 12, "day-of-week"),
    ("0 0 12 ? * 5L-2", 12, "day-of-week"),
    ("0 0 12 1-5W * ?", 8, "day-of-month"),
    ("*/0 * * * * ?", 1, "second"),
    ("0 0 12 L-31 * ?", 8, "day-of-month"),
    ("0 0 12 ? * 1#0", 14, "day-of-week"),  # points at the occurrence
    ("0 0 12 1 1 ? 1969", 14, "year"),
    ("0 0 12 1 1 ? 2030-2027", 14, "year"),
    ("0 0 * ? 1 MON L", 15, "year"),
]


@pytest.mark.parametrize(
    ("expr", "column", "field"), INVALID, ids=[i[0] or "empty" for i in INVALID]
)
def test_invalid_expressions_are_rejected_with_the_field_and_column(
    expr: str, column: int, field: str
) -> None:
    with pytest.raises(CronSyntaxError) as info:
        parse_cron(expr)
    assert (info.value.field, info.value.column) == (field, column), info.value.message
    assert info.value.message


def test_fixed_time_means_no_star_in_second_minute_or_hour() -> None:
    assert parse_cron("30 2 * * *").fixed_time
    assert parse_cron("0 0/30 8-18 ? * MON-FRI").fixed_time
    assert not parse_cron("*/5 2 * * *").fixed_time
    assert not parse_cron("0 30 * * * ?").fixed_time
    assert not parse_cron("* 30 2 * * ?").fixed_time
    assert not parse_cron("0 /5 2 * * ?").fixed_time  # Quartz "/5" means "*/5"
    assert not parse_cron("@hourly").fixed_time


def test_parsed_expressions_are_cached_by_text() -> None:
    assert parse_cron("7 7 * * *") is parse_cron("7 7 * * *")


def test_names_and_letters_are_case_insensitive() -> None:
    a = parse_cron("0 0 12 ? jan-mar mon-fri")
    b = parse_cron("0 0 12 ? JAN-MAR MON-FRI")
    assert (a.months, a.day_rule.dow) == (b.months, b.day_rule.dow)
    assert parse_cron("0 0 12 lw * ?").day_rule.mode == "last-weekday"


def test_a_date_that_never_exists_is_known_without_searching() -> None:
    assert parse_cron("0 0 30 2 *").never is not None
    assert parse_cron("0 0 0 31 4,6,9,11 ?").never is not None
    assert parse_cron("0 0 29 2 *").never is None
