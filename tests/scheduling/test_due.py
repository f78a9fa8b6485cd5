"""``plan_due``: the firing loop's misfire decisions with skipped slots folded into ranges."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.scheduling import plan_missed
from reconciler.scheduling.slots import DueEntry, fold_skips, plan_due

from .conftest import iso, trigger

EVERY_SECOND = trigger(every="1s", start="2026-06-15T00:00:00Z")
HOURLY = trigger(cron="0 * * * *")


def _expand(entries: list[DueEntry]) -> list[tuple[str, str, str]]:
    """One (slot, action, reason) per slot of the hourly trigger, ranges expanded."""
    out = []
    for e in entries:
        s = e.slot
        for _ in range(e.count):
            out.append((s.isoformat(), e.action, e.reason))
            nxt = HOURLY.next_after(s)
            assert nxt is not None
            s = nxt
        if e.count > 1:
            assert e.until == HOURLY.slots_after(e.slot, e.count - 1)[-1]
    return out


def test_a_week_of_an_every_second_schedule_missed_is_three_entries_not_six_hundred_thousand() -> (
    None
):
    last = iso("2026-06-15T00:00:00Z")
    now = iso("2026-06-22T00:00:30Z")
    entries, cursor = plan_due(EVERY_SECOND, "tick", last, now, "once", timedelta(hours=1))
    assert cursor == now.replace(microsecond=0)
    assert sum(e.count for e in entries) == 7 * 86400 + 30
    kinds = [(e.action, e.reason, e.count) for e in entries]
    # older than the window (late > 1 h) / inside it, covered by the on-time runs / on time
    # (late <= the 60 s grace: 61 slots)
    assert kinds[:2] == [("skip", "misfire", 7 * 86400 + 30 - 61 - 3540), ("skip", "misfire", 3540)]
    assert kinds[2:] == [("run", "on-time", 1)] * 61
    assert entries[0].until is not None and entries[0].until < entries[1].slot


def test_nothing_due_before_the_first_fire_time_and_jitter_delays_the_fire() -> None:
    tr = trigger(cron="0 * * * *", jitter="10m")
    last = iso("2026-06-15T11:30:00Z")
    at = tr.slots_after(last, 1)[0]
    entries, cursor = plan_due(tr, "web", last, at, "once", timedelta(hours=1))
    first_fire = plan_due(tr, "web", last, at + timedelta(minutes=10), "once", timedelta(hours=1))
    assert first_fire[0][0].fire_at >= at
    if first_fire[0][0].fire_at > at:
        assert (entries, cursor) == ([], None)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=0, max_value=30 * 3600),
    st.integers(min_value=0, max_value=30 * 3600),
    st.sampled_from(["once", "skip", "all"]),
    st.integers(min_value=1, max_value=12 * 3600),
)
def test_expanded_ranges_agree_with_plan_missed_slot_by_slot(
    start_offset: int, span: int, policy: str, window_s: int
) -> None:
    last = iso("2026-06-15T00:00:00Z") + timedelta(seconds=start_offset)
    now = last + timedelta(seconds=span)
    window = timedelta(seconds=window_s)
    expected = [
        (d.slot.isoformat(), d.action, d.reason)
        for d in plan_missed(HOURLY, last, now, policy, window)  # type: ignore[arg-type]
    ]
    entries, cursor = plan_due(HOURLY, "h", last, now, policy, window)  # type: ignore[arg-type]
    assert _expand(entries) == expected
    assert cursor == (iso(expected[-1][0]) if expected else None)
    # folded: no two neighbouring skips share reason and message
    for a, b in pairwise(entries):
        assert not (
            a.action == b.action == "skip" and a.reason == b.reason and a.message == b.message
        )


def test_a_paused_schedule_folds_every_due_slot_into_one_skip() -> None:
    last = iso("2026-06-15T00:00:00Z")
    entries, _ = plan_due(HOURLY, "h", last, iso("2026-06-15T10:00:05Z"), "all", timedelta(days=1))
    folded = fold_skips(entries, "paused", "the schedule is paused (enabled: false)")
    assert [(e.reason, e.count) for e in folded] == [("paused", 10)]
    assert folded[0].until == iso("2026-06-15T10:00:00Z")
