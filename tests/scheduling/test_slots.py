"""Jitter, upcoming fire times, misfire plans and overlap decisions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reconciler.scheduling import decide_overlap, fire_at, plan_missed, upcoming
from reconciler.scheduling.jitter import jitter_delay

from .conftest import iso, trigger

HOURLY = trigger(cron="0 * * * *")


def test_jitter_is_the_same_every_time_and_differs_between_schedules_and_slots() -> None:
    slot, nxt = iso("2026-06-15T12:00:00Z"), iso("2026-06-15T13:00:00Z")
    j = timedelta(minutes=10)
    a = fire_at("nightly", slot, j, nxt)
    assert a == fire_at("nightly", slot, j, nxt)
    assert timedelta(0) <= a - slot < j
    others = {fire_at(f"s{i}", slot, j, nxt) for i in range(20)}
    assert len(others) > 15  # spread out, not one value
    assert fire_at("nightly", nxt, j, None) - nxt != a - slot


def test_jitter_never_reaches_the_next_slot_and_zero_jitter_is_no_delay() -> None:
    slot = iso("2026-06-15T12:00:00Z")
    nxt = slot + timedelta(seconds=30)
    for i in range(200):
        assert fire_at(f"s{i}", slot, timedelta(hours=1), nxt) < nxt
    assert fire_at("x", slot, None, nxt) == slot
    assert fire_at("x", slot, timedelta(0), nxt) == slot
    assert jitter_delay("x", slot, timedelta(hours=1), slot) == timedelta(0)


def test_upcoming_shows_jittered_fire_times() -> None:
    tr = trigger(cron="0 * * * *", jitter="10m")
    ups = upcoming(tr, "web", iso("2026-06-15T12:30:00Z"), 3)
    assert [u.slot for u in ups] == tr.slots_after(iso("2026-06-15T12:30:00Z"), 3)
    for u in ups:
        assert u.fire_at == fire_at(
            "web", u.slot, timedelta(minutes=10), u.slot + timedelta(hours=1)
        )


def _plan(
    policy: str, now: str = "2026-06-15T12:00:20Z", window: str = "3h"
) -> list[tuple[str, str, str]]:
    hours = {"3h": timedelta(hours=3), "90m": timedelta(minutes=90)}[window]
    return [
        (d.slot.strftime("%H:%M"), d.action, d.reason)
        for d in plan_missed(HOURLY, iso("2026-06-15T06:30:00Z"), iso(now), policy, hours)  # type: ignore[arg-type]
    ]


def test_misfire_all_runs_each_missed_slot_inside_the_window() -> None:
    # now is 12:00:20 and the window 3h: 09:00 is 3h00m20s old, just outside
    assert _plan("all") == [
        ("07:00", "skip", "misfire"),
        ("08:00", "skip", "misfire"),
        ("09:00", "skip", "misfire"),
        ("10:00", "run", "catch-up"),
        ("11:00", "run", "catch-up"),
        ("12:00", "run", "on-time"),
    ]


def test_misfire_skip_skips_every_missed_slot_with_a_reason() -> None:
    assert [a for _, a, _ in _plan("skip")] == ["skip"] * 5 + ["run"]
    assert all(r == "misfire" for _, _, r in _plan("skip")[:5])


def test_misfire_once_runs_one_catch_up() -> None:
    # an on-time slot exists: it is the one run
    assert [a for _, a, _ in _plan("once")] == ["skip"] * 5 + ["run"]
    # no on-time slot: the newest missed slot inside the window runs
    assert _plan("once", now="2026-06-15T11:40:00Z", window="90m") == [
        ("07:00", "skip", "misfire"),
        ("08:00", "skip", "misfire"),
        ("09:00", "skip", "misfire"),
        ("10:00", "skip", "misfire"),
        ("11:00", "run", "catch-up"),
    ]


def test_misfire_with_nothing_missed_is_empty_and_bad_policies_are_refused() -> None:
    assert (
        plan_missed(
            HOURLY,
            iso("2026-06-15T12:00:00Z"),
            iso("2026-06-15T12:59:00Z"),
            "once",
            timedelta(hours=1),
        )
        == []
    )
    with pytest.raises(ValueError):
        plan_missed(
            HOURLY,
            iso("2026-06-15T12:00:00Z"),
            iso("2026-06-15T12:59:00Z"),
            "later",  # type: ignore[arg-type]
            timedelta(hours=1),
        )


@pytest.mark.parametrize(
    ("policy", "running", "queued", "action", "reason"),
    [
        ("skip", False, 0, "start", None),
        ("skip", True, 0, "skip", "overlap"),
        ("queue", True, 0, "queue", None),
        ("queue", True, 1, "skip", "overlap"),
        ("cancel", True, 0, "cancel-and-start", None),
        ("allow", True, 3, "start", None),
        ("allow", False, 0, "start", None),
    ],
)
def test_overlap_policies_decide_what_a_due_run_does(
    policy: str, running: bool, queued: int, action: str, reason: str | None
) -> None:
    d = decide_overlap(policy, running, queued)  # type: ignore[arg-type]
    assert (d.action, d.reason) == (action, reason)
    assert d.message
