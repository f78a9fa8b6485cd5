"""The live half of the state store on both backends: fire batches guarded by their cursor,
cancel requests seen at the heartbeat, outcomes fenced by the lease token, history pruning."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from reconciler.stores import (
    FireBatch,
    LedgerWrite,
    NewRun,
    StateStore,
    SystemJob,
)
from tests.stores.conftest import age_leases

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
S = timedelta(seconds=1)


def _run(slot: datetime, schedule: str = "s") -> NewRun:
    return NewRun(template="t", trigger="schedule", commit=None, schedule=schedule, slot=slot)


def test_a_batch_whose_cursor_moved_records_nothing(open_state: Callable[[], StateStore]) -> None:
    a, b = open_state(), open_state()
    first = FireBatch("s", None, NOW, "h", (LedgerWrite(NOW, run=_run(NOW)),))
    [ok] = a.record_fires([first], NOW)
    assert ok.ok and len(ok.runs) == 1
    # a second replica that read the same (empty) cursor computes the same slot: refused
    [dup] = b.record_fires([first], NOW)
    assert not dup.ok and dup.runs == ()
    nxt = FireBatch(
        "s",
        NOW,
        NOW + 10 * S,
        "h",
        (
            LedgerWrite(NOW + S, skip_reason="misfire", detail="x", until=NOW + 9 * S, count=9),
            LedgerWrite(NOW + 10 * S, run=_run(NOW + 10 * S)),
        ),
    )
    assert [r.ok for r in b.record_fires([nxt], NOW)] == [True]
    assert a.fire_cursors()["s"].last_slot == NOW + 10 * S
    entries = a.list_slots("s")
    assert [(e.slot, e.count) for e in entries] == [(NOW + 10 * S, 1), (NOW + S, 9), (NOW, 1)]
    # a changed ``when`` (another hash) starts afresh
    [again] = a.record_fires([FireBatch("s", None, NOW + 20 * S, "h2", ())], NOW)
    assert again.ok


def test_cancel_heartbeat_and_a_fenced_outcome(open_state: Callable[[], StateStore]) -> None:
    store = open_state()
    queued = store.create_run(NewRun("t", "cli", None), NOW)
    assert queued is not None
    assert store.request_cancel(queued.id, NOW, "alice").status == "cancelled"  # type: ignore[union-attr]
    run = store.create_run(NewRun("t", "cli", None), NOW)
    assert run is not None
    claimed = store.claim_next_run("w1", 2, NOW)
    assert claimed is not None and claimed.id == run.id
    assert store.heartbeat(run.id, "w1", 2, NOW + S) == "ok"
    assert store.heartbeat(run.id, "someone-else", 2, NOW + S) == "lost"
    store.request_cancel(run.id, NOW, "bob")
    assert store.heartbeat(run.id, "w1", 2, NOW + S) == "cancel"
    assert store.cancel_note(run.id) == "cancelled by bob"
    # the lease runs out, the reaper abandons it, the worker resumes: nothing recorded
    age_leases(store, 10)
    assert store.reap_runs(NOW + 10 * S) == [run.id]
    assert not store.record_outcome(run.id, "w1", "succeeded", "done", [], [], NOW + 11 * S)
    final = store.get_run(run.id)
    assert final is not None and final.status == "abandoned"
    assert store.heartbeat(run.id, "w1", 2, NOW + 12 * S) == "lost"


def test_history_pruning_keeps_the_newest_runs_and_the_cursor_keeps_slots_from_refiring(
    open_state: Callable[[], StateStore],
) -> None:
    store = open_state()
    for i in range(10):
        slot = NOW + i * S
        store.record_fires(
            [
                FireBatch(
                    "s",
                    None if i == 0 else slot - S,
                    slot,
                    "h",
                    (LedgerWrite(slot, run=_run(slot)),),
                )
            ],
            NOW,
        )
        claimed = store.claim_next_run("w", 60, NOW)
        assert claimed is not None
        assert store.record_outcome(claimed.id, "w", "succeeded", None, [], [], NOW)
    assert store.prune_history(3, 30, NOW + timedelta(days=1)) == 7
    assert len(store.list_runs(schedule="s")) == 3
    assert len(store.list_slots("s")) == 3
    assert store.fire_cursors()["s"].last_slot == NOW + 9 * S
    assert store.prune_history(3, 30, NOW + timedelta(days=40)) == 3
    store.record_system(SystemJob("prune-history", 3600, NOW, "3 pruned"))
    store.record_system(SystemJob("prune-history", 3600, NOW + S, "0 pruned"))
    [job] = store.list_system()
    assert (job.name, job.last_at, job.detail) == ("prune-history", NOW + S, "0 pruned")
