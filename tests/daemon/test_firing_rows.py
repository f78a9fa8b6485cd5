"""Firing rows: the short per-schedule rows firing arms from stay in step with the applied
schedules (apply, change, prune, state changes through the store), a state from before they
existed is filled in when it is opened, and a burst of schedules sharing one shape still gets
exactly one ledger entry per slot, also with a second replica."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.clock import ManualClock
from reconciler.engine.firing import FiringLoop
from reconciler.model.firing import firing_spec
from reconciler.stores import StateStore
from reconciler.stores._sql import LATEST_VERSION
from reconciler.stores.sqlite import SqliteStore

from .conftest import apply_dir, schedule, write_repo

T0 = datetime(2026, 6, 15, 10, 0, 30, tzinfo=UTC)
HOUR = datetime(2026, 6, 15, 11, tzinfo=UTC)


def _in_step(store: StateStore) -> None:
    """Every applied schedule has its firing row, made from its body, with its head."""
    objects = {r.name: r for r in store.list_objects("Schedule")}
    heads = {h.name: h for h in store.firing_heads()}
    assert sorted(heads) == sorted(objects)
    cursors = store.fire_cursors()
    for name, rec in objects.items():
        h = heads[name]
        assert h.firing == firing_spec(rec.body), name
        assert h.body is None
        assert (h.serial, h.state, h.state_reason, h.revision, h.updated_at) == (
            rec.serial,
            rec.state,
            rec.state_reason,
            rec.revision,
            rec.updated_at,
        ), name
        assert h.cursor == cursors.get(name)
    some = sorted(objects)[:2]
    assert [h.name for h in store.firing_heads(some)] == some


def _kinds(store: StateStore, name: str) -> list[str | None]:
    return [e.skip_reason for e in reversed(store.list_slots(name, limit=1000))]


def test_firing_rows_follow_apply_change_prune_and_state_changes(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    root = tmp_path / "repo"
    docs = {f"s{i}": schedule(f"s{i}", '{cron: "0 * * * *"}') for i in range(4)}
    docs["p"] = schedule("p", '{cron: "0 * * * *"}', enabled="false")
    apply_dir(store, write_repo(root, docs), T0)
    _in_step(store)
    docs["s1"] = schedule("s1", "{every: 5m}", overlap="queue")
    del docs["s2"]
    apply_dir(store, write_repo(root, docs), T0 + timedelta(seconds=1))
    _in_step(store)
    assert "s2" not in {h.name for h in store.firing_heads()}
    store.set_object_state("Schedule", "s0", "awaiting-approval", "needs 1 approval", T0)
    _in_step(store)
    clock = ManualClock(T0)
    loop = FiringLoop(store, clock)
    loop.reload()
    clock.set(HOUR)
    loop.step()
    _in_step(store)  # the cursors moved
    assert _kinds(store, "s0") == ["approval-pending"]
    assert _kinds(store, "p") == ["paused"]


def test_a_state_change_made_through_the_store_reaches_a_running_loop(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    """What an approval does: the schedule's state changes through set_object_state, the loop
    is poked and fires the next slot under the new state (one ledger entry per slot)."""
    store = open_state()
    apply_dir(store, write_repo(tmp_path, {"h": schedule("h", '{cron: "0 * * * *"}')}), T0)
    store.set_object_state("Schedule", "h", "awaiting-approval", "waits", T0)
    clock = ManualClock(T0)
    loop = FiringLoop(store, clock)
    loop.reload()
    clock.set(HOUR)
    loop.step()
    other = open_state()  # the approval comes through another connection
    other.set_object_state("Schedule", "h", "active", None, HOUR + timedelta(minutes=5))
    loop.poke()
    loop.step()
    assert loop._armed["h"].state == "active"
    clock.set(HOUR + timedelta(hours=1))
    loop.step()
    loop.step()
    assert _kinds(store, "h") == ["approval-pending", None]
    assert len(store.list_runs(schedule="h")) == 1


def test_a_state_from_before_firing_rows_gets_them_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    old = SqliteStore(path, migrate_to=4)
    try:
        docs = {f"s{i}": schedule(f"s{i}", '{cron: "0 * * * *"}') for i in range(3)}
        apply_dir(old, write_repo(tmp_path / "repo", docs), T0)
    finally:
        old.close()
    store = SqliteStore(path)
    try:
        assert store.info().schema_version == LATEST_VERSION
        _in_step(store)
        # a schedule without its row (written by hand) is still armed, from its body
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM rc_firing WHERE schedule = 's1'")
        bare = {h.name: h for h in store.firing_heads()}["s1"]
        assert bare.firing is None and bare.body is not None
        clock = ManualClock(T0)
        loop = FiringLoop(store, clock)
        loop.reload()
        assert sorted(loop._armed) == ["s0", "s1", "s2"]
        clock.set(HOUR)
        loop.step()
        assert [_kinds(store, f"s{i}") for i in range(3)] == [[None]] * 3
    finally:
        store.close()


def test_a_burst_of_one_shape_gets_one_entry_per_slot_with_two_replicas(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    """200 schedules differing only in name share their decisions in a pass; a paused one and
    one with a queued run of its own still get theirs, and the second replica records none."""
    docs = {f"b{i:03d}": schedule(f"b{i:03d}", '{cron: "0 * * * *"}') for i in range(200)}
    docs["paused"] = schedule("paused", '{cron: "0 * * * *"}', enabled="false")
    a, b = open_state(), open_state()
    apply_dir(a, write_repo(tmp_path, docs), T0)
    clock = ManualClock(T0)
    la, lb = FiringLoop(a, clock), FiringLoop(b, clock)
    la.reload()
    lb.reload()
    clock.set(HOUR)
    first = la.step()
    assert len(first) == 200 and lb.step() == []
    assert {r.schedule for r in first} == set(docs) - {"paused"}
    assert len({r.id for r in first}) == 200
    assert {r.slot for r in first} == {HOUR}
    # b000's run is taken by a worker and still going at the next slot: its slot is skipped
    # (overlap: skip), the others run; whichever replica comes first records them, once
    claimed = a.claim_next_run("w1", 3600, HOUR)
    assert claimed is not None and claimed.schedule == "b000"
    clock.set(HOUR + timedelta(hours=1))
    assert len(lb.step()) == 199
    assert la.step() == []
    for name in docs:
        assert len(_kinds(a, name)) == 2, name
    assert _kinds(a, "paused") == ["paused", "paused"]
    assert _kinds(a, "b000") == [None, "overlap"]
    assert len(a.list_runs(limit=1000)) == 399


def test_schedules_without_a_firing_row_are_listed_so_start_up_finds_them_without_a_scan(
    tmp_path: Path,
) -> None:
    """A schedule whose body lacks what firing needs has no firing row: it is listed in
    ``rc_firing_bare`` (filled when a state of schema 6 is opened), leaves the list when a
    valid body comes, and start-up reads exactly the listed bodies."""
    from reconciler.stores import ObjectWrite

    path = tmp_path / "state.sqlite"
    old = SqliteStore(path, migrate_to=6)
    try:
        docs = {f"s{i}": schedule(f"s{i}", '{cron: "0 * * * *"}') for i in range(3)}
        apply_dir(old, write_repo(tmp_path / "repo", docs), T0)
        old.apply_changes(old.serial(), None, [ObjectWrite("Schedule", "x", "h", "{}")], [], T0)
    finally:
        old.close()

    def listed() -> list[str]:
        with sqlite3.connect(path) as conn:
            return [r[0] for r in conn.execute("SELECT schedule FROM rc_firing_bare ORDER BY 1")]

    store = SqliteStore(path)
    try:
        assert listed() == ["x"]
        statements: list[str] = []
        assert store._conn is not None
        store._conn.set_trace_callback(statements.append)
        heads = {h.name: h for h in store.firing_heads()}
        store._conn.set_trace_callback(None)
        assert heads["x"].firing is None and heads["x"].body == "{}"
        assert all(heads[f"s{i}"].body is None for i in range(3))
        assert not any("NOT EXISTS" in s for s in statements), statements
        # a valid body: off the list; another schedule without one: on it
        valid = store.get_object("Schedule", "s0")
        assert valid is not None
        fixed = ObjectWrite("Schedule", "x", valid.content_hash, valid.body)
        store.apply_changes(store.serial(), None, [fixed], [], T0)
        assert listed() == []
        store.apply_changes(store.serial(), None, [ObjectWrite("Schedule", "y", "h", "{}")], [], T0)
        assert listed() == ["y"]
        _in_step_but(store, {"y"})
        # removed: off the list
        store.apply_changes(store.serial(), None, [], [("Schedule", "y")], T0)
        assert listed() == []
        _in_step(store)
    finally:
        store.close()


def _in_step_but(store: StateStore, bare: set[str]) -> None:
    heads = {h.name: h for h in store.firing_heads()}
    assert sorted(heads) == sorted(r.name for r in store.list_objects("Schedule"))
    assert {n for n, h in heads.items() if h.firing is None} == bare
