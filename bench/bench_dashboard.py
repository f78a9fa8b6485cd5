"""Dashboard benchmark (issue 11): the server time of every page with 10,000 schedules and
100,000 runs in the state, against the same page with an empty state, on SQLite and PostgreSQL.

    python bench/bench_dashboard.py [--quick] [--no-pg] [--pg URL] [--samples N]

The goal: each page in <= 100 ms (median server time) on the large state. A state is the
generated base repository (``bench/repo_gen.py``) applied through the engine, then (large)
10,000 schedules written in one store-level apply (the ``when`` forms of
``bench/bench_daemon.py``; one in fifty waits for approval) and 100,000 finished runs over 30
days with two per-server results each, a ledger row for each scheduled one and drift for 50
servers, written in bulk through the store's transaction seam. The empty state is the base
repository alone.

Server time is the time of one request through the ASGI application that ``serve`` runs
(:func:`reconciler.api.app.create_app`: routing, sign-in by cookie, the read models,
rendering), in process, so the figure holds no network or browser time. Each page is
requested a few times to warm up, then ``--samples`` times; the figure is the median.
``--quick`` uses 2,000 schedules and 20,000 runs: a smoke run, not the goal's figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_daemon import base_state, bulk_schedules, mixed_when  # noqa: E402
from bench.bench_store import DEFAULT_PG, Backends  # noqa: E402
from bench.repo_gen import generate  # noqa: E402
from reconciler.api.app import create_app  # noqa: E402
from reconciler.api.context import ApiContext, Health  # noqa: E402
from reconciler.clock import SystemClock  # noqa: E402
from reconciler.stores import Approval, DriftRecord, ObjectWrite, StateStore, open_store  # noqa: E402

GOAL = 0.100
SECRET = "rk_bench-dashboard-read-key-0123456789"
STATUSES = ["succeeded"] * 17 + ["failed", "failed", "cancelled"]


def fill(store: StateStore, schedules: int, runs: int, now: datetime) -> dict[str, Any]:
    """The large state; returns names and ids the pages are requested with."""
    names = [f"s{i:06d}" for i in range(schedules)]
    bulk_schedules(store, [(n, mixed_when(i)) for i, n in enumerate(names)], now)
    waiting = names[::50]
    # one in fifty waits for approval (content decided by approvals, none given yet)
    writes = []
    for n in waiting:
        rec = store.get_object("Schedule", n)
        assert rec is not None
        writes.append(
            ObjectWrite(
                "Schedule",
                n,
                rec.content_hash,
                rec.body,
                state="awaiting-approval",
                state_reason="needs 1 approval (0 so far) from group:leads",
                authors=("frank@example.com",),
                approval_hash="sha256:" + rec.content_hash,
            )
        )
    store.apply_changes(store.serial(), store.info().revision, writes, [], now)
    for w in writes[:50]:  # and some decisions already recorded
        assert w.approval_hash is not None
        store.record_approval(Approval(w.name, w.approval_hash, "erin", "approve", now))
    sql: Any = store
    start = now - timedelta(days=30)
    step = timedelta(days=30) / runs
    rows, slots, hosts = [], [], []
    for i in range(runs):
        run_id = i + 1
        created = start + step * i
        scheduled = i % 5 != 0
        name = names[i % schedules]
        status = STATUSES[i % len(STATUSES)]
        slot = created.replace(microsecond=0) if scheduled else None
        rows.append(
            (
                run_id,
                name if scheduled else None,
                "patch",
                "schedule" if scheduled else ("api" if i % 2 else "cli"),
                None if slot is None else sql._ts(slot),
                status,
                "0" * 40,
                sql._ts(created),
                sql._ts(created),
                sql._ts(created + timedelta(seconds=30)),
                json.dumps({"level": "security"}),
                "{}",
                False,
                f"{status} (bench)",
                "alice",
            )
        )
        if slot is not None:
            slots.append((name, sql._ts(slot), run_id, sql._ts(created)))
        for k in range(2):
            server = f"web-{(i + k) % 50:02d}"
            failed = 1 if status == "failed" and k == 1 else 0
            hosts.append((run_id, server, "failed" if failed else "ok", 5, 1, failed, 0, 0, 0))
    with sql._tx("write") as tx:
        for chunk in range(0, len(rows), 5000):
            tx.many(
                "INSERT INTO rc_runs (id, schedule, template, trigger_kind, slot, status, "
                "commit_sha, created_at, started_at, finished_at, variables, targets, simulate, "
                "message, requested_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows[chunk : chunk + 5000],
            )
        for chunk in range(0, len(slots), 5000):
            tx.many(
                "INSERT INTO rc_slots (schedule, slot, run_id, skip_reason, detail, recorded_at) "
                "VALUES (?, ?, ?, NULL, NULL, ?) ON CONFLICT DO NOTHING",
                slots[chunk : chunk + 5000],
            )
        for chunk in range(0, len(hosts), 5000):
            tx.many(
                "INSERT INTO rc_host_results (run_id, server, status, ok, changed, failed, "
                "unreachable, skipped, drifted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                hosts[chunk : chunk + 5000],
            )
    if store.info().backend == "postgresql":
        with sql._tx("write") as tx:
            tx.run("SELECT setval(pg_get_serial_sequence('rc_runs', 'id'), ?)", (runs,))
            tx.run("ANALYZE")
    store.record_drift(
        [
            DriftRecord(
                f"web-{s:02d}",
                "patch",
                runs - s,
                "drifted" if s % 7 == 0 else "in-sync",
                {"sshd_config": {"changed": True}} if s % 7 == 0 else {},
                now,
            )
            for s in range(50)
        ]
    )
    store.append_log(runs, "".join(f"TASK [step {k}] ok: [web-01]\n" for k in range(2000)))
    return {"schedule": names[schedules // 2], "run": runs, "mid": runs // 2}


def pages(ids: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("upcoming", "/"),
        ("upcoming, page after a name", f"/?after={ids['schedule']}"),
        ("upcoming, waiting for approval", "/?state=awaiting-approval"),
        ("upcoming, name search", "/?q=99"),
        ("timeline 24 h", "/timeline?window=24h"),
        ("timeline 7 d", "/timeline?window=7d"),
        ("runs", "/runs"),
        ("runs, failed", "/runs?status=failed"),
        ("runs, trigger retry (none)", "/runs?trigger=retry"),
        ("runs, one schedule", f"/runs?schedule={ids['schedule']}"),
        ("runs, a page in the middle", f"/runs?before={ids['mid']}"),
        ("run with its log", f"/runs/{ids['run']}"),
        ("log fragment", f"/runs/{ids['run']}/log?offset=0"),
        ("schedule and ledger", f"/schedules/{ids['schedule']}"),
        ("approval queue", "/approvals"),
        ("drift", "/drift"),
        ("status", "/status"),
    ]


def measure(url: str, paths: list[tuple[str, str]], samples: int) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    ctx = ApiContext(
        open_store=lambda: open_store(url), clock=SystemClock(), health=Health(lambda: None)
    )
    out: dict[str, float] = {}
    with TestClient(create_app(ctx)) as client:
        client.cookies.set("reconciler_session", SECRET)
        for label, path in paths:
            times = []
            for k in range(3 + samples):
                t0 = time.perf_counter()
                r = client.get(path)
                dt = time.perf_counter() - t0
                assert r.status_code == 200, (path, r.status_code, r.text[:300])
                if k >= 3:
                    times.append(dt)
            out[label] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--pg", default=DEFAULT_PG)
    ap.add_argument("--samples", type=int, default=15)
    args = ap.parse_args()
    schedules, runs = (2_000, 20_000) if args.quick else (10_000, 100_000)
    now = datetime.now(UTC)
    with (
        tempfile.TemporaryDirectory() as tmp_dir,
        Backends(Path(tmp_dir), None if args.no_pg else args.pg) as backends,
    ):
        tmp = Path(tmp_dir)
        repo = generate(tmp / "repo", 1)
        for backend in backends.names():
            urls = {}
            ids: dict[str, Any] = {"schedule": "patch-00000", "run": 1, "mid": 1}
            for size in ("empty", "large"):
                url = backends.url(backend)
                with open_store(url) as store:
                    base_state(store, repo, now)
                    store.create_api_key("bench", SECRET, ["read"], [], None, now)
                    if size == "large":
                        t0 = time.perf_counter()
                        ids = fill(store, schedules, runs, now)
                        print(
                            f"{backend}: filled {schedules:,} schedules and {runs:,} runs "
                            f"in {time.perf_counter() - t0:.1f} s",
                            flush=True,
                        )
                    else:
                        from reconciler.stores import NewRun

                        run = store.create_run(NewRun("patch", "cli", None), now)
                        assert run is not None
                        store.append_log(run.id, "one line\n")
                urls[size] = url
            large_pages = pages(ids)
            empty_pages = pages({"schedule": "patch-00000", "run": 1, "mid": 1})
            empty = measure(urls["empty"], empty_pages, args.samples)
            large = measure(urls["large"], large_pages, args.samples)
            print(
                f"\n{backend}: median server time per page ({args.samples} samples; "
                f"goal <= {GOAL * 1000:.0f} ms with {schedules:,} schedules, {runs:,} runs)"
            )
            print(f"  {'page':<32} {'empty':>9} {'large':>9} {'ratio':>7}  goal")
            worst = 0.0
            for label, _ in large_pages:
                e, g = empty[label], large[label]
                worst = max(worst, g)
                print(
                    f"  {label:<32} {e * 1000:7.1f} ms {g * 1000:6.1f} ms {g / e:6.1f}x  "
                    f"{'ok' if g <= GOAL else 'MISSED'}"
                )
            print(f"  slowest page: {worst * 1000:.1f} ms")


if __name__ == "__main__":
    main()
