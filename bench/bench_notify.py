"""Notification benchmark (issue 11): what the outbox adds to recording a run.

    python bench/bench_notify.py [--runs N] [--no-pg] [--pg URL]

For each backend (SQLite on the disk, and PostgreSQL), interleaved run by run: a claimed run is
recorded with ``record_outcome`` and no outbox row (the baseline, what recording cost before
notifications), and the same with its notifications (the run object rendered, one outbox row
written in the same transaction: what ``engine/runs.py`` does for a template that notifies one
channel on success; the rules are read when the run starts, outside the timing). Figures are
medians over ``--runs`` runs of each kind; the goal is <= 1 ms added.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconciler.engine.notifying import stored_rules
from reconciler.engine.runs import _notifications
from reconciler.stores import StateStore, open_store
from reconciler.stores.base import HostResult, NewRun, ObjectWrite

TEMPLATE = {
    "apiVersion": "reconciler/v1",
    "kind": "JobTemplate",
    "metadata": {"name": "ping"},
    "spec": {"notify": [{"channel": "hook", "on": ["success", "failure"]}]},
}
QUIET = {**TEMPLATE, "metadata": {"name": "quiet"}, "spec": {"notify": []}}


def _prepare(store: StateStore) -> None:
    now = datetime.now(UTC)
    store.apply_changes(
        store.serial(),
        "bench",
        [
            ObjectWrite("JobTemplate", "ping", "h1", json.dumps(TEMPLATE)),
            ObjectWrite("JobTemplate", "quiet", "h2", json.dumps(QUIET)),
        ],
        [],
        now,
    )


def _one(store: StateStore, with_outbox: bool) -> float:
    now = datetime.now(UTC)
    template = "ping" if with_outbox else "quiet"
    run = store.create_run(NewRun(template, "cli", None, claim_by="w"), now)
    assert run is not None
    hosts = [HostResult("web-1", "ok", ok=3, changed=1), HostResult("web-2", "ok", ok=3)]
    # the rules are read when a run starts (engine/runs.py), not when it is recorded
    rules = stored_rules(store, None, template)
    t0 = time.perf_counter()
    if with_outbox:
        rows, marks = _notifications(store, run, "succeeded", "ok", hosts, [], now, rules)
        assert len(rows) == 1
        ok = store.record_outcome(run.id, "w", "succeeded", "ok", hosts, [], now, rows, marks)
    else:
        ok = store.record_outcome(run.id, "w", "succeeded", "ok", hosts, [], now)
    elapsed = time.perf_counter() - t0
    assert ok
    return elapsed


def bench(url: str, label: str, runs: int) -> tuple[float, float]:
    with open_store(url, lock_timeout=30) as store:
        _prepare(store)
        for _ in range(20):  # warm up
            _one(store, False)
            _one(store, True)
        base: list[float] = []
        ours: list[float] = []
        for _ in range(runs):
            base.append(_one(store, False))
            ours.append(_one(store, True))
    b, o = statistics.median(base) * 1000, statistics.median(ours) * 1000
    print(
        f"{label:<11} record_outcome {b:6.2f} ms; with its outbox row {o:6.2f} ms; "
        f"added {o - b:+.2f} ms (median of {runs})"
    )
    return b, o


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench(str(Path(tmp) / "state.sqlite"), "sqlite", args.runs)
    if not args.no_pg:
        import psycopg

        name = f"reconciler_bench_notify_{int(time.time())}"
        head = args.pg.rpartition("/")[0]
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            bench(f"{head}/{name}", "postgresql", args.runs)
        finally:
            with psycopg.connect(args.pg, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
