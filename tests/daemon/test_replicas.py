"""Three ``serve`` replicas on one PostgreSQL state: one SIGKILLed, one SIGSTOPped past its
lease and resumed. Every slot is recorded once, none is lost, and the stopped replica records
nothing over the run that was abandoned meanwhile (fenced by its lease token)."""

from __future__ import annotations

import itertools
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.stores import open_store

from .conftest import Serve, ledger_slots, make_repo, schedule, until


@pytest.mark.slow
def test_three_replicas_one_killed_one_stopped_past_its_lease_record_each_slot_once(
    tmp_path: Path, pg_url: str, serves: list[Serve], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = {f"r{i}": schedule(f"r{i}", "{every: 1s}", overlap="allow") for i in range(3)}
    docs["slow"] = schedule("slow", "{every: 1s}", overlap="skip")
    repo = make_repo(tmp_path, docs)
    monkeypatch.setenv("RECONCILER_TEST_LEASE_SECONDS", "3")
    replicas = [Serve(repo, pg_url, "--workers", "2", "--poll", "1h", fake="1.5") for _ in range(3)]
    serves.extend(replicas)
    with open_store(pg_url) as store:
        until(
            lambda: len(store.list_replicas(store.info().applied_at or _epoch())) == 3,
            30,
            "three replicas",
        )
        until(lambda: len(ledger_slots(store, "r0")) >= 5, 30, "firing")
        killed, stopped, alive = replicas
        killed.signal(signal.SIGKILL)
        killed.wait(10)
        # stop one while its workers hold runs, for longer than the lease
        until(
            lambda: any(
                r.worker and r.worker.startswith(_replica_of(stopped, store))
                for r in store.list_runs(status="running", limit=100)
            ),
            30,
            "a run held by the replica about to be stopped",
        )
        held = [
            r.id
            for r in store.list_runs(status="running", limit=100)
            if r.worker and r.worker.startswith(_replica_of(stopped, store))
        ]
        assert held
        stopped.signal(signal.SIGSTOP)
        until(
            lambda: all(store.get_run(i).status == "abandoned" for i in held),
            40,  # type: ignore[union-attr]
            "the stopped replica's runs abandoned",
        )
        stopped.signal(signal.SIGCONT)
        time.sleep(4)  # it resumes, finishes its fake runs and tries to record them
        for i in held:
            run = store.get_run(i)
            assert run is not None and run.status == "abandoned", "a fenced worker recorded"
        alive.signal(signal.SIGTERM)
        stopped.signal(signal.SIGTERM)
        assert alive.wait(60) == 0
        assert stopped.wait(60) == 0
        for name in [*(f"r{i}" for i in range(3)), "slow"]:
            slots = ledger_slots(store, name)
            assert len(slots) == len(set(slots)), f"{name}: a slot twice"
            gaps = {b - a for a, b in itertools.pairwise(slots)}
            assert gaps == {timedelta(seconds=1)}, f"{name}: a slot missing ({gaps})"
        # a run of the killed or the stopped replica whose lease ran out after the survivors'
        # last reaping pass (every 5 s) is reaped by the next replica that starts, as here;
        # a run a replica left behind when it exited would still hold a live lease
        store.reap_runs(datetime.now(UTC))
        runs = store.list_runs(limit=100_000)
        keys = [(r.schedule, r.slot) for r in runs]
        assert len(keys) == len(set(keys))
        # the killed replica's runs were abandoned by lease expiry, never run again
        left = [
            (r.id, r.status, r.worker, r.lease_expires, r.message)
            for r in runs
            if r.status not in {"succeeded", "abandoned", "cancelled", "queued"}
        ]
        assert not left, left
        assert "abandoned" in {r.status for r in runs}


def _epoch():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime(1970, 1, 1, tzinfo=UTC)


def _replica_of(s: Serve, store) -> str:  # type: ignore[no-untyped-def]
    pid = s.proc.pid
    for r in store.list_replicas(_epoch()):
        if r.pid == pid:
            return str(r.id)
    raise AssertionError(f"no replica row for pid {pid}")
