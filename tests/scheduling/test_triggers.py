"""Every form of ``when``, windows, time zones, and the loader's ``check_when``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reconciler.scheduling import WhenError, build_trigger, check_when

from .conftest import iso, local_isos, trigger, when

NOW = iso("2026-06-15T12:00:00Z")


def test_daily_fires_every_day_at_its_time_in_its_zone() -> None:
    tr = trigger("Europe/Berlin", daily={"at": "06:30"})
    assert local_isos(tr, "2026-06-15T12:00:00Z", 2) == [
        "2026-06-16T06:30:00+02:00",
        "2026-06-17T06:30:00+02:00",
    ]


def test_weekly_fires_on_each_listed_day() -> None:
    tr = trigger(weekly={"days": ["thu", "mon"], "at": "02:00:30"})
    assert local_isos(tr, "2026-06-15T12:00:00Z", 3) == [  # 2026-06-15 is a Monday
        "2026-06-18T02:00:30+00:00",
        "2026-06-22T02:00:30+00:00",
        "2026-06-25T02:00:30+00:00",
    ]


def test_monthly_skips_months_without_the_day_and_last_means_the_last_day() -> None:
    assert local_isos(trigger(monthly={"day": 31, "at": "03:00"}), "2026-03-31T12:00:00Z", 3) == [
        "2026-05-31T03:00:00+00:00",
        "2026-07-31T03:00:00+00:00",
        "2026-08-31T03:00:00+00:00",
    ]
    assert local_isos(
        trigger(monthly={"day": "last", "at": "03:00"}), "2028-01-31T12:00:00Z", 2
    ) == ["2028-02-29T03:00:00+00:00", "2028-03-31T03:00:00+00:00"]


def test_yearly_on_february_29_fires_in_leap_years_only() -> None:
    tr = trigger(yearly={"month": "feb", "day": 29, "at": "00:00"})
    assert [s.year for s in tr.slots_after(NOW, 3)] == [2028, 2032, 2036]


def test_at_fires_once_and_naive_is_local_while_aware_is_an_instant() -> None:
    naive = trigger("Asia/Tokyo", at="2026-12-01T02:00:00")
    assert local_isos(naive, "2026-01-01T00:00:00Z", 3) == ["2026-12-01T02:00:00+09:00"]
    aware = trigger("Asia/Tokyo", at="2026-12-01T02:00:00Z")
    assert [s.isoformat() for s in aware.slots_after(NOW, 3)] == ["2026-12-01T02:00:00+00:00"]
    assert aware.next_after(iso("2026-12-01T02:00:00Z")) is None


def test_every_is_anchored_to_start_and_without_start_to_the_epoch() -> None:
    anchored = trigger(every="45m", start="2026-06-15T12:10:00Z")
    assert local_isos(anchored, "2026-06-15T12:00:00Z", 3) == [
        "2026-06-15T12:10:00+00:00",
        "2026-06-15T12:55:00+00:00",
        "2026-06-15T13:40:00+00:00",
    ]
    assert local_isos(anchored, "2026-06-15T12:55:00Z", 1) == ["2026-06-15T13:40:00+00:00"]
    free = trigger(every="7d")  # 1970-01-01 was a Thursday
    assert [s.strftime("%a %H:%M") for s in free.slots_after(NOW, 2)] == ["Thu 00:00"] * 2


def test_start_and_end_bound_the_slots_inclusively() -> None:
    tr = trigger(daily={"at": "12:00"}, start="2026-07-01T12:00:00Z", end="2026-07-03T12:00:00Z")
    assert [s.day for s in tr.slots_after(NOW, 10)] == [1, 2, 3]
    assert list(tr.due_between(iso("2026-07-01T12:00:00Z"), iso("2026-07-03T12:00:00Z"))) == [
        iso("2026-07-02T12:00:00Z"),
        iso("2026-07-03T12:00:00Z"),
    ]


def test_the_timezone_comes_from_when_or_else_the_default() -> None:
    assert trigger("Europe/Paris", cron="0 9 * * *").timezone == "Europe/Paris"
    assert build_trigger(when(cron="0 9 * * *", timezone="Asia/Kolkata"), "UTC").timezone == (
        "Asia/Kolkata"
    )


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        ({"cron": "0 0 12 ? * 8"}, "cron", "when-invalid"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone", "timezone-unknown"),
        ({"cron": "0 9 * * *", "timezone": "../etc/passwd"}, "timezone", "timezone-unknown"),
        (
            {
                "daily": {"at": "09:00"},
                "start": "2026-02-01T00:00:00",
                "end": "2026-01-01T00:00:00",
            },
            "end",
            "when-window",
        ),
    ],
)
def test_build_trigger_names_the_field_at_fault(
    fields: dict[str, object], field: str, code: str
) -> None:
    with pytest.raises(WhenError) as info:
        build_trigger(when(**fields), "UTC")
    assert (info.value.field, info.value.code) == (field, code)


def test_check_when_reports_a_cron_error_with_its_column() -> None:
    [p] = check_when(when(cron="0 0 25 * * ?"), "UTC", NOW)
    assert (p.code, p.severity, p.field, p.column) == ("when-invalid", "error", ("cron",), 5)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "0 0 30 2 *"}, ("cron",)),
        ({"cron": "0 0 0 31 4 ? *"}, ("cron",)),
        ({"yearly": {"month": "feb", "day": 30, "at": "00:00"}}, ("yearly", "day")),
        ({"yearly": {"month": "apr", "day": 31, "at": "00:00"}}, ("yearly", "day")),
        ({"cron": "0 15 10 ? * 6L 2002-2005"}, ("cron",)),
        (
            {
                "daily": {"at": "09:00"},
                "start": "2026-07-01T10:00:00Z",
                "end": "2026-07-02T08:00:00Z",
            },
            ("end",),
        ),
        ({"at": "2026-07-01T00:00:00Z", "start": "2026-08-01T00:00:00Z"}, ("at",)),
    ],
)
def test_check_when_finds_schedules_that_can_never_fire(
    fields: dict[str, object], field: tuple[str, ...]
) -> None:
    [p] = check_when(when(**fields), "UTC", NOW)
    assert (p.code, p.severity, p.field) == ("when-never", "error", field), p.message


def test_check_when_warns_about_an_at_already_past_and_accepts_good_schedules() -> None:
    [p] = check_when(when(at="2026-01-01T00:00:00"), "UTC", NOW)
    assert (p.code, p.severity, p.field) == ("when-past", "warning", ("at",))
    for fields in (
        {"at": "2027-01-01T00:00:00"},
        {"cron": "0 0 29 2 *"},
        {"every": "15m"},
        {"monthly": {"day": 31, "at": "01:00"}},
    ):
        assert check_when(when(**fields), "UTC", NOW) == []


def test_check_when_reports_timezone_and_window_codes() -> None:
    [tz] = check_when(when(daily={"at": "09:00"}, timezone="Nowhere/City"), "UTC", NOW)
    assert (tz.code, tz.field) == ("timezone-unknown", ("timezone",))
    [win] = check_when(
        when(daily={"at": "09:00"}, start="2026-01-01T00:00:00", end="2026-01-01T00:00:00"),
        "UTC",
        NOW,
    )
    assert (win.code, win.field) == ("when-window", ("end",))


def test_check_when_is_cheap_enough_for_the_loader() -> None:
    import time

    whens = [when(cron=f"{m} {h} * * *") for m in range(0, 60, 7) for h in range(24)]
    whens += [when(daily={"at": f"{h:02d}:15"}) for h in range(24)]
    for w in whens:  # warm the parse caches as a loader re-reading a repo would
        check_when(w, "Europe/Berlin", NOW)
    t0 = time.process_time()
    for _ in range(5):
        for w in whens:
            check_when(w, "Europe/Berlin", NOW)
    per = (time.process_time() - t0) / (5 * len(whens))
    assert per < 200e-6, f"{per * 1e6:.1f} us per schedule"  # goal ~20 us; generous for CI


def test_jitter_is_carried_by_the_trigger() -> None:
    assert trigger(cron="0 9 * * *", jitter="5m").jitter == timedelta(minutes=5)
    assert trigger(cron="0 9 * * *").jitter is None
