"""The firing loop against a real state store and a manual clock: each due slot gets exactly
one ledger entry, across restarts, outages, clock steps and a second replica."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.clock import ManualClock
from reconciler.engine.firing import FiringLoop
from reconciler.stores import ObjectWrite, StateStore

from .conftest import apply_dir, schedule, write_repo

T0 = datetime(2026, 6, 15, 10, 0, 30, tzinfo=UTC)


def _ledger(store: StateStore, name: str) -> list[tuple[str, str | None, int]]:
    """(slot, skip reason or None for a run, count), oldest first."""
    return [
        (e.slot.strftime("%d %H:%M:%S"), e.skip_reason, e.count)
        for e in reversed(store.list_slots(name, limit=10_000))
    ]


def _loop(store: StateStore, clock: ManualClock) -> FiringLoop:
    loop = FiringLoop(store, clock)
    loop.reload()
    return loop


def _drive(loop: FiringLoop, clock: ManualClock, until: datetime) -> None:
    """Run the loop as the daemon does, sleeping until each next fire time, up to ``until``."""
    for _ in range(100_000):
        loop.step()
        deadline = loop.next_deadline()
        if deadline is None or deadline > until:
            clock.set(max(until, clock.now()))
            loop.step()
            return
        clock.set(max(deadline, clock.now()))
    raise AssertionError("the drive did not reach its end")


def test_an_hourly_schedule_fires_each_slot_once_however_often_the_loop_wakes(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    apply_dir(store, write_repo(tmp_path, {"h": schedule("h", '{cron: "0 * * * *"}')}), T0)
    clock = ManualClock(T0)
    loop = _loop(store, clock)
    assert loop.next_deadline() == datetime(2026, 6, 15, 11, tzinfo=UTC)
    _drive(loop, clock, T0 + timedelta(hours=3))
    for _ in range(3):
        loop.step()
    assert _ledger(store, "h") == [(f"15 {h}:00:00", None, 1) for h in (11, 12, 13)]
    runs = store.list_runs(schedule="h")
    assert sorted(r.slot for r in runs if r.slot) == [
        datetime(2026, 6, 15, h, tzinfo=UTC) for h in (11, 12, 13)
    ]
    assert {r.trigger for r in runs} == {"schedule"}
    assert {r.status for r in runs} == {"queued"}


def test_a_restart_after_an_outage_follows_the_misfire_policy(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    docs = {
        "once": schedule("once", '{every: 10m, start: "2026-06-15T00:00:00Z"}'),
        "skip": schedule(
            "skip", '{every: 10m, start: "2026-06-15T00:00:00Z"}', misfire="{policy: skip}"
        ),
        "all": schedule(
            "all",
            '{every: 10m, start: "2026-06-15T00:00:00Z"}',
            misfire="{policy: all, window: 30m}",
            overlap="allow",
        ),
    }
    apply_dir(store, write_repo(tmp_path, docs), T0)
    clock = ManualClock(T0)
    _drive(_loop(store, clock), clock, T0 + timedelta(minutes=30))
    # the daemon is down for an hour and a half, then a new loop starts on the same state
    clock.advance(timedelta(minutes=90))
    loop = _loop(store, clock)
    loop.step()
    now = clock.now()
    assert now == datetime(2026, 6, 15, 12, 0, 30, tzinfo=UTC)
    before = [(f"15 10:{m}:00", None, 1) for m in (10, 20, 30)]
    assert _ledger(store, "once")[:3] == before
    assert _ledger(store, "once")[3:] == [("15 10:40:00", "misfire", 8), ("15 12:00:00", None, 1)]
    assert _ledger(store, "skip")[3:] == [("15 10:40:00", "misfire", 8), ("15 12:00:00", None, 1)]
    assert _ledger(store, "all")[3:] == [
        ("15 10:40:00", "misfire", 6),
        ("15 11:40:00", None, 1),
        ("15 11:50:00", None, 1),
        ("15 12:00:00", None, 1),
    ]
    triggers = {
        r.slot.strftime("%H:%M"): r.trigger for r in store.list_runs(schedule="all") if r.slot
    }
    assert triggers["11:40"] == triggers["11:50"] == "catch-up"
    assert triggers["12:00"] == "schedule"


def test_the_wall_clock_stepped_back_an_hour_fires_nothing_twice(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    apply_dir(
        store,
        write_repo(tmp_path, {"q": schedule("q", '{every: 15m, start: "2026-06-15T00:00:00Z"}')}),
        T0,
    )
    clock = ManualClock(T0)
    loop = _loop(store, clock)
    _drive(loop, clock, T0 + timedelta(hours=1))
    fired = _ledger(store, "q")
    clock.set(clock.now() - timedelta(hours=1))
    _drive(loop, clock, clock.now() + timedelta(hours=1))
    assert _ledger(store, "q") == fired  # the same hour again: nothing new
    # and forward by two hours: the misfire policy (once) decides what the jump missed
    clock.advance(timedelta(hours=2))
    loop.step()
    tail = _ledger(store, "q")[len(fired) :]
    assert [r for _, r, _ in tail] == ["misfire", None]
    assert sum(c for _, _, c in tail) == 8


def test_paused_and_awaiting_approval_slots_are_recorded_skipped_with_the_reason(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    docs = {"p": schedule("p", '{cron: "*/5 * * * *"}', enabled="false")}
    apply_dir(store, write_repo(tmp_path, docs), T0)
    clock = ManualClock(T0)
    _drive(_loop(store, clock), clock, T0 + timedelta(minutes=30))
    entries = store.list_slots("p")
    assert {e.skip_reason for e in entries} == {"paused"}
    assert sum(e.count for e in entries) == 6
    assert store.list_runs(schedule="p") == []


def test_an_at_time_already_past_when_applied_runs_once_right_away(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    docs = {"a": schedule("a", '{at: "2026-06-01T02:00:00"}', misfire="{policy: skip}")}
    apply_dir(store, write_repo(tmp_path, docs), T0)
    clock = ManualClock(T0)
    loop = _loop(store, clock)
    assert loop.next_deadline() == datetime(2026, 6, 1, 2, tzinfo=UTC)
    loop.step()
    _drive(loop, clock, T0 + timedelta(days=2))
    assert _ledger(store, "a") == [("01 02:00:00", None, 1)]
    assert loop.next_deadline() is None


def test_an_owner_who_lost_run_disables_the_schedule_at_its_next_slot_with_a_failed_run(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    root = write_repo(tmp_path, {"o": schedule("o", '{cron: "0 * * * *"}')})
    apply_dir(store, root, T0)
    # The applied Policy changes: alice leaves sre (her schedule itself is unchanged).
    rec = store.get_object("Policy", "ops")
    assert rec is not None
    body = json.loads(rec.body)
    body["spec"]["users"][0]["groups"] = []
    text = json.dumps(body, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    store.apply_changes(store.serial(), None, [ObjectWrite("Policy", "ops", digest, text)], [], T0)
    clock = ManualClock(T0)
    loop = _loop(store, clock)
    _drive(loop, clock, T0 + timedelta(hours=3))
    runs = store.list_runs(schedule="o")
    assert len(runs) == 1 and runs[0].status == "failed"
    assert "alice" in (runs[0].message or "") and "run" in (runs[0].message or "")
    rec = store.get_object("Schedule", "o")
    assert rec is not None and rec.state == "disabled"
    assert [r for _, r, _ in _ledger(store, "o")] == [None, "owner-invalid", "owner-invalid"]


def test_two_replicas_firing_the_same_state_record_every_slot_once(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    a, b = open_state(), open_state()
    docs = {
        f"s{i}": schedule(f"s{i}", '{every: 1m, start: "2026-06-15T00:00:00Z"}') for i in range(5)
    }
    apply_dir(a, write_repo(tmp_path / "repo", docs), T0)
    clock = ManualClock(T0)
    la, lb = _loop(a, clock), _loop(b, clock)
    for _ in range(60):
        clock.advance(timedelta(seconds=13))
        la.step()
        lb.step()
    for i in range(5):
        slots = [s for s, _, _ in _ledger(a, f"s{i}")]
        assert len(slots) == len(set(slots)) == 13
    assert len(a.list_runs(limit=1000)) == 65


def test_a_reload_after_an_apply_re_arms_only_what_changed(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    root = tmp_path / "repo"
    docs = {f"s{i}": schedule(f"s{i}", '{cron: "0 * * * *"}') for i in range(5)}
    apply_dir(store, write_repo(root, docs), T0)
    clock = ManualClock(T0)
    loop = _loop(store, clock)
    before = {n: loop._armed[n] for n in loop._armed}
    # one schedule changes, one is new, one is removed
    docs["s1"] = schedule("s1", '{cron: "30 * * * *"}')
    docs["n"] = schedule("n", '{cron: "15 * * * *"}')
    del docs["s4"]
    apply_dir(store, write_repo(root, docs), T0 + timedelta(seconds=1))
    loop.poke()
    loop.step()
    assert sorted(loop._armed) == ["n", "s0", "s1", "s2", "s3"]
    assert loop._armed["s0"] is before["s0"]  # untouched: not armed again
    assert loop._armed["s1"] is not before["s1"]
    assert loop.next_deadline() == datetime(2026, 6, 15, 10, 15, tzinfo=UTC)
    _drive(loop, clock, T0 + timedelta(hours=1))
    assert [s for s, _, _ in _ledger(store, "s1")] == ["15 10:30:00"]
    assert [s for s, _, _ in _ledger(store, "n")] == ["15 10:15:00"]
    assert _ledger(store, "s4") == []
    # a Policy change concerns every schedule: all are armed again
    policy = (root / "policy.yaml").read_text().replace("dave@example.com", "dave@example.org")
    (root / "policy.yaml").write_text(policy)
    apply_dir(store, root, T0 + timedelta(hours=1, seconds=1))
    kept = loop._armed["s0"]
    loop.poke()
    loop.step()
    assert loop._armed["s0"] is not kept


def test_a_stored_schedule_that_cannot_be_read_records_desired_state_invalid(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    apply_dir(store, write_repo(tmp_path, {"h": schedule("h", '{cron: "0 * * * *"}')}), T0)
    rec = store.get_object("Schedule", "h")
    assert rec is not None
    body = json.loads(rec.body)
    body["spec"]["owner"] = ["not", "a", "name"]  # edited by hand: valid JSON, not a Schedule
    text = json.dumps(body)
    store.apply_changes(
        store.serial(),
        None,
        [ObjectWrite("Schedule", "h", rec.content_hash, text, True, "active")],
        [],
        T0,
    )
    clock = ManualClock(T0)
    loop = _loop(store, clock)
    _drive(loop, clock, T0 + timedelta(hours=2))
    assert [r for _, r, _ in _ledger(store, "h")] == ["desired-state-invalid"] * 2
    assert store.list_runs(schedule="h") == []


def test_a_pass_that_cannot_write_leaves_its_slots_due_for_the_next_pass(tmp_path: Path) -> None:
    """The state refuses the ledger write (another writer holds it past the lock timeout):
    nothing is recorded, and the same slots fire at the next pass instead of being lost."""
    import sqlite3

    from reconciler.errors import StateError
    from reconciler.stores.sqlite import SqliteStore

    path = tmp_path / "state.sqlite"
    store = SqliteStore(path, lock_timeout=0.2)
    try:
        apply_dir(
            store, write_repo(tmp_path / "repo", {"h": schedule("h", '{cron: "0 * * * *"}')}), T0
        )
        clock = ManualClock(T0)
        loop = _loop(store, clock)
        deadline = loop.next_deadline()
        assert deadline is not None
        clock.set(deadline)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StateError):
                loop.step()
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert _ledger(store, "h") == []
        loop.step()
        assert _ledger(store, "h") == [("15 11:00:00", None, 1)]
    finally:
        store.close()
