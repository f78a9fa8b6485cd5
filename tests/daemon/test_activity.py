"""What the firing loop reads for the overlap policy: the active runs of the schedules due at a
wake, oldest first, on both backends, whatever else is queued or in the history; and the
overlap decision the loop makes from them with a backlog of other schedules' runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.clock import ManualClock
from reconciler.engine.firing import FiringLoop
from reconciler.stores import NewRun, StateStore
from reconciler.stores._sql import _ACTIVITY_NAMES
from reconciler.stores.sqlite import SqliteStore

from .conftest import apply_dir, schedule, write_repo

T0 = datetime(2026, 6, 15, 10, 0, 30, tzinfo=UTC)


def _run(store: StateStore, schedule: str, minute: int) -> int:
    run = store.create_run(
        NewRun("ping", "schedule", None, schedule=schedule, slot=T0 + timedelta(minutes=minute)),
        T0,
    )
    assert run is not None
    return run.id


def _finish(store: StateStore, run_id: int, worker: str = "w") -> None:
    claimed = store.claim_run(run_id, worker, 60, T0)
    assert claimed is not None
    assert store.record_outcome(run_id, worker, "succeeded", None, [], [], T0)


def test_activity_of_named_schedules_is_theirs_oldest_first_and_leaves_out_the_rest(
    open_state: Callable[[], StateStore],
) -> None:
    store = open_state()
    a1, b1, a2, a3, c1 = (_run(store, s, i) for i, s in enumerate("abaac"))
    _finish(store, b1)  # history: not active any more
    assert store.claim_run(a2, "w", 60, T0) is not None  # a2 running, a1 and a3 queued
    assert store.schedule_activity(["a"]) == {"a": ([a2], [a1, a3])}
    assert store.schedule_activity(["a", "b", "nothing"]) == {"a": ([a2], [a1, a3])}
    assert store.schedule_activity([]) == {}
    everything = {"a": ([a2], [a1, a3]), "c": ([], [c1])}
    assert store.schedule_activity() == everything
    # more names than one lookup takes: every active run is read, theirs among them
    many = ["a", *(f"x{i}" for i in range(_ACTIVITY_NAMES))]
    assert store.schedule_activity(many)["a"] == ([a2], [a1, a3])


def test_activity_is_read_from_the_index_of_active_runs_not_the_whole_history(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "state.db")
    try:
        for i in range(50):
            _finish(store, _run(store, "a", i))
        _run(store, "a", 60)
        statements: list[str] = []
        conn = store._conn
        assert conn is not None
        conn.set_trace_callback(statements.append)
        for names in (["a"], None):
            store.schedule_activity(names)
        conn.set_trace_callback(None)
        reads = [s for s in statements if s.startswith("SELECT") and "rc_runs" in s]
        assert len(reads) == 2, statements
        for sql in reads:
            plan = [str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
            assert any("rc_runs_active" in line for line in plan), (sql, plan)
            assert not any(line.startswith("SCAN") for line in plan), (sql, plan)
    finally:
        store.close()


def test_the_loop_skips_an_overlapping_slot_and_fires_the_others_beside_a_backlog(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    docs = {
        "busy": schedule("busy", '{cron: "0 * * * *"}'),
        "free": schedule("free", '{cron: "0 * * * *"}'),
        "other": schedule("other", '{cron: "0 3 * * *"}'),
    }
    apply_dir(store, write_repo(tmp_path, docs), T0)
    running = _run(store, "busy", -30)
    assert store.claim_run(running, "w", 3600, T0) is not None
    backlog = [_run(store, "other", -i) for i in range(1, 300)]
    clock = ManualClock(T0)
    loop = FiringLoop(store, clock)
    loop.reload()
    clock.set(datetime(2026, 6, 15, 11, tzinfo=UTC))
    runs = loop.step()
    assert [r.schedule for r in runs] == ["free"]
    busy = store.get_slot("busy", datetime(2026, 6, 15, 11, tzinfo=UTC))
    assert busy is not None and busy.skip_reason == "overlap" and busy.run_id is None
    assert store.schedule_activity(["other"])["other"] == ([], backlog)
