"""The live half of the state store on both backends: fire batches guarded by their cursor,
cancel requests seen at the heartbeat, outcomes fenced by the lease token, history pruning."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

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
    [moved] = b.record_fires([nxt], NOW)
    assert moved.ok and moved.skipped == (("misfire", 9),) and len(moved.runs) == 1
    assert a.fire_cursors()["s"].last_slot == NOW + 10 * S
    entries = a.list_slots("s")
    assert [(e.slot, e.count) for e in entries] == [(NOW + 10 * S, 1), (NOW + S, 9), (NOW, 1)]
    # a changed ``when`` (another hash) starts afresh; entries for slots that the ledger has
    # already are not written, and the result says so (what the metrics count)
    taken = (
        LedgerWrite(NOW + S, skip_reason="paused"),
        LedgerWrite(NOW + 10 * S, run=_run(NOW + 10 * S)),
        LedgerWrite(NOW + 20 * S, skip_reason="paused"),
    )
    [again] = a.record_fires([FireBatch("s", None, NOW + 20 * S, "h2", taken)], NOW)
    assert again.ok and again.runs == () and again.skipped == (("paused", 1),)


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


def test_on_postgresql_a_dead_workers_run_is_reaped_by_its_free_lock_after_a_grace(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session advisory lock per running run: freed by the server when the claiming process
    dies. A reaper abandons the run once the lock stayed free for the grace period across its
    passes, long before the lease; a live claim (its lock held) is never reaped that way."""
    import multiprocessing

    from reconciler.stores import open_store
    from reconciler.stores import postgres as pg
    from tests.stores import _procs

    monkeypatch.setattr(pg, "RUN_LOCK_GRACE", 0.5)
    with open_store(pg_url) as s:
        dying = s.create_run(NewRun("t", "cli", None), NOW)
        alive = s.create_run(NewRun("t", "cli", None), NOW)
    assert dying is not None and alive is not None
    holder = open_store(pg_url)
    reaper = open_store(pg_url)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=_procs.claim_and_wait, args=(pg_url, dying.id, results))
    child.start()
    try:
        assert results.get(timeout=60)[0] == "claimed"
        assert holder.claim_run(alive.id, "somewhere:1", 600, NOW) is not None
        assert reaper.reap_runs(NOW) == []  # both locks held
        child.kill()
        child.join(30)
        assert reaper.reap_runs(NOW) == []  # free, but not for the grace period yet
        deadline = time.monotonic() + 20
        reaped: list[int] = []
        while not reaped and time.monotonic() < deadline:
            time.sleep(0.2)
            reaped = list(reaper.reap_runs(NOW))
        assert reaped == [dying.id]
        assert reaper.get_run(alive.id).status == "running"  # type: ignore[union-attr]
        gone = reaper.get_run(dying.id)
        assert gone is not None and gone.status == "abandoned"
    finally:
        if child.is_alive():
            child.kill()
        child.join(30)
        holder.close()
        reaper.close()


def test_a_burst_of_mixed_runs_is_written_as_asked_and_read_back_the_same(
    open_state: Callable[[], StateStore],
) -> None:
    """A burst goes as JSON rows grouped by what runs share: runs of other templates,
    variables, provenance, messages (quotes, non-ASCII text), catch-ups, failed runs and skip
    ranges in one call are each written with their own values, as read back."""
    store = open_state()
    shared_vars: dict[str, object] = {"version": "1.0", "count": 3, "on": True}
    prov: dict[str, object] = {"signing_key": None, "content_hash": "sha256:ab", "approvers": ["a"]}
    batches = []
    for i in range(60):
        slot = NOW + i * S
        run = NewRun(
            template="t" if i % 3 else "other",
            trigger="schedule" if i % 4 else "catch-up",
            commit="c" * 40,
            schedule=f"s{i:02d}",
            slot=slot,
            variables=shared_vars if i % 2 else {"version": f"v{i}", "name": 'quote " and ü'},
            targets={"roles": ["web"]} if i % 5 else {},
            simulate=i % 7 == 0,
            message=None if i % 4 else f'1 slot missed, "ran late" \u00e9t\u00e9 {i}',
            status="failed" if i == 13 else "queued",
            provenance=prov if i % 2 else {},
        )
        entries = [LedgerWrite(slot, run=run)]
        if i % 10 == 0:
            entries.insert(
                0, LedgerWrite(slot - 9 * S, skip_reason="misfire", until=slot - S, count=9)
            )
        batches.append(FireBatch(f"s{i:02d}", None, slot, "h", tuple(entries)))
    results = store.record_fires(batches, NOW)
    assert all(r.ok for r in results)
    assert [r.skipped for r in results[:11:10]] == [(("misfire", 9),), (("misfire", 9),)]
    written = {r.schedule: r for res in results for r in res.runs}
    for batch in batches:
        want = next(e.run for e in batch.entries if e.run is not None)
        got = store.get_run(written[batch.schedule].id)
        assert got is not None and got == written[batch.schedule]
        assert (got.template, got.trigger, got.commit, got.slot) == (
            want.template,
            want.trigger,
            want.commit,
            want.slot,
        )
        assert (got.variables, got.targets, got.simulate, got.message, got.status) == (
            dict(want.variables),
            dict(want.targets),
            want.simulate,
            want.message,
            want.status,
        )
        assert got.provenance == dict(want.provenance)
        assert (got.finished_at is None) == (want.status == "queued")
    assert store.fire_cursors()["s59"].last_slot == NOW + 59 * S
    assert [(e.slot, e.count, e.skip_reason) for e in store.list_slots("s10")] == [
        (NOW + 10 * S, 1, None),
        (NOW + S, 9, "misfire"),
    ]
