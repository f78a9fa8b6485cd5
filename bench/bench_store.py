"""State-store benchmark: apply and listing on SQLite and PostgreSQL, with APScheduler's
SQLAlchemy SQLite job store listing the same numbers of jobs as the baseline, in the same run.

    python bench/bench_store.py [--quick] [--pg URL] [--no-pg] [--json FILE]

Figures are medians of wall-clock seconds over fresh states. Goals (issue 4): apply of 10,000
creates <= 3 s on each backend; listing 10,000 schedules <= 1 s; 100,000 stays linear
(reported as ``per-item(100k) / per-item(10k)``, 1.0 = perfectly linear). The baseline needs
``pip install apscheduler sqlalchemy`` (APScheduler 3.x); without it that column is left out.
"""

from __future__ import annotations

import argparse
import json
import pickle
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.stores import ObjectWrite, StateStore, open_store

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def schedules(n: int) -> list[ObjectWrite]:
    """``n`` schedule objects shaped like the planner's output (canonical JSON, a hash)."""
    out = []
    for i in range(n):
        name = f"job-{i:06d}"
        body = json.dumps(
            {
                "apiVersion": "reconciler/v1",
                "kind": "Schedule",
                "metadata": {"name": name},
                "spec": {
                    "template": "backup",
                    "when": {"cron": f"{i % 60} {i % 24} * * *"},
                    "timezone": "Europe/Berlin",
                    "targets": {"roles": ["db"]},
                    "variables": {"retention": "7d"},
                },
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        out.append(ObjectWrite("Schedule", name, f"{i:064x}", body, state="active"))
    return out


def median_of(repeats: int, run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(repeats))


class Backends:
    """Fresh states on demand: a SQLite file, or a PostgreSQL schema in a scratch database."""

    def __init__(self, tmp: Path, pg_admin: str | None) -> None:
        self.tmp = tmp
        self.pg_admin = pg_admin
        self.pg_db: str | None = None
        self._admin: Any = None

    def __enter__(self) -> Backends:
        if self.pg_admin:
            import psycopg

            self._admin = psycopg.connect(self.pg_admin, autocommit=True)
            name = f"reconciler_bench_{secrets.token_hex(4)}"
            self._admin.execute(f'CREATE DATABASE "{name}"')
            self.pg_db = self.pg_admin.rpartition("/")[0] + "/" + name
        return self

    def __exit__(self, *exc: object) -> None:
        if self._admin is not None and self.pg_db is not None:
            name = self.pg_db.rpartition("/")[2]
            self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._admin.close()

    def names(self) -> list[str]:
        return ["sqlite"] + (["postgresql"] if self.pg_db else [])

    def url(self, backend: str) -> str:
        """The URL of a new, empty state (a file, or a schema), for callers that open it more
        than once (one connection per thread, as the daemon does)."""
        if backend == "sqlite":
            return str(self.tmp / f"state-{secrets.token_hex(4)}.db")
        import psycopg

        assert self.pg_db is not None
        schema = f"b_{secrets.token_hex(4)}"
        with psycopg.connect(self.pg_db, autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
        return f"{self.pg_db}?options={quote(f'-csearch_path={schema}')}"

    @contextmanager
    def fresh(self, backend: str) -> Iterator[StateStore]:
        store = open_store(self.url(backend))
        try:
            yield store
        finally:
            store.close()


def bench_apply(b: Backends, backend: str, n: int, repeats: int) -> float:
    objs = schedules(n)

    def once() -> float:
        with b.fresh(backend) as s:
            t0 = time.perf_counter()
            s.apply_changes(0, "0" * 40, objs, [], NOW)
            return time.perf_counter() - t0

    return median_of(repeats, once)


def bench_list(b: Backends, backend: str, n: int, repeats: int) -> float:
    with b.fresh(backend) as s:
        s.apply_changes(0, "0" * 40, schedules(n), [], NOW)

        def once() -> float:
            t0 = time.perf_counter()
            got = s.list_objects("Schedule")
            dt = time.perf_counter() - t0
            assert len(got) == n
            return dt

        return median_of(repeats, once)


def bench_apscheduler_list(tmp: Path, n: int, repeats: int) -> float | None:
    """APScheduler 3's SQLAlchemyJobStore on SQLite: ``get_all_jobs()`` over ``n`` cron jobs.

    The table is filled in bulk with exactly the rows ``add_job`` writes (a pickled job state
    per job), because adding 100,000 jobs one transaction at a time would take minutes."""
    try:
        # APScheduler 3 ships no type information.
        from apscheduler.job import Job  # type: ignore[import-untyped, unused-ignore]
        from apscheduler.jobstores.sqlalchemy import (  # type: ignore[import-untyped, unused-ignore]
            SQLAlchemyJobStore,
        )
        from apscheduler.schedulers.background import (  # type: ignore[import-untyped, unused-ignore]
            BackgroundScheduler,
        )
        from apscheduler.triggers.cron import (  # type: ignore[import-untyped, unused-ignore]
            CronTrigger,
        )
        from apscheduler.util import (  # type: ignore[import-untyped, unused-ignore]
            datetime_to_utc_timestamp,
        )
    except ImportError:
        return None
    path = tmp / f"apscheduler-{n}.db"
    store = SQLAlchemyJobStore(url=f"sqlite:///{path}")
    scheduler = BackgroundScheduler(timezone="UTC")
    store.start(scheduler, "default")
    first = NOW + timedelta(hours=1)
    template = Job(
        scheduler,
        id="job-000000",
        func="builtins:print",
        trigger=CronTrigger(hour=3, minute=0, timezone="Europe/Berlin"),
        executor="default",
        args=("backup", "retention=7d"),
        kwargs={},
        name="backup",
        misfire_grace_time=60,
        coalesce=True,
        max_instances=1,
        next_run_time=first,
    )
    state = template.__getstate__()
    rows = []
    for i in range(n):
        st = dict(state, id=f"job-{i:06d}")
        rows.append(
            {
                "id": st["id"],
                "next_run_time": datetime_to_utc_timestamp(first),
                "job_state": pickle.dumps(st, store.pickle_protocol),
            }
        )
    with store.engine.begin() as conn:
        conn.execute(store.jobs_t.insert(), rows)

    def once() -> float:
        t0 = time.perf_counter()
        jobs = store.get_all_jobs()
        dt = time.perf_counter() - t0
        assert len(jobs) == n
        return dt

    try:
        return median_of(repeats, once)
    finally:
        store.shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="one repetition instead of five")
    ap.add_argument("--pg", default=DEFAULT_PG, help=f"PostgreSQL admin URL (default {DEFAULT_PG})")
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = ap.parse_args(argv)
    repeats = 1 if args.quick else 5
    small, large = 10_000, 100_000
    results: dict[str, Any] = {"repeats": repeats}

    with (
        tempfile.TemporaryDirectory(prefix="bench-store-") as d,
        Backends(Path(d), None if args.no_pg else args.pg) as b,
    ):
        tmp = Path(d)
        print(f"state store benchmark, medians of {repeats} (wall seconds)")
        print(f"{'measure':<44}{'sqlite':>10}{'postgresql':>12}{'goal':>10}")

        def row(label: str, key: str, fn: Callable[[str], float], goal: str) -> None:
            vals = {be: fn(be) for be in b.names()}
            results[key] = vals
            cells = "".join(
                f"{vals[be]:>{10 if be == 'sqlite' else 12}.3f}" if be in vals else " " * 12
                for be in ("sqlite", "postgresql")
            )
            print(f"{label:<44}{cells}{goal:>10}")

        row(
            f"apply {small:,} creates",
            "apply_10k",
            lambda be: bench_apply(b, be, small, repeats),
            "<= 3 s",
        )
        row(
            f"list {small:,} schedules",
            "list_10k",
            lambda be: bench_list(b, be, small, repeats),
            "<= 1 s",
        )
        row(
            f"list {large:,} schedules",
            "list_100k",
            lambda be: bench_list(b, be, large, max(1, repeats // 2)),
            "linear",
        )
        for be in b.names():
            lin = (results["list_100k"][be] / large) / (results["list_10k"][be] / small)
            results.setdefault("linearity", {})[be] = lin
        print(
            f"{'  linearity per-item(100k)/per-item(10k)':<44}"
            + "".join(
                f"{results['linearity'][be]:>{10 if be == 'sqlite' else 12}.2f}" for be in b.names()
            )
        )

        aps = {n: bench_apscheduler_list(tmp, n, max(1, repeats // 2)) for n in (small, large)}
        if aps[small] is None or aps[large] is None:
            print("APScheduler baseline: not installed (pip install apscheduler sqlalchemy)")
        else:
            results["apscheduler_list"] = {str(k): v for k, v in aps.items()}
            print()
            print("baseline: APScheduler 3 SQLAlchemyJobStore (SQLite), get_all_jobs()")
            for n in (small, large):
                key = "list_10k" if n == small else "list_100k"
                a = aps[n]
                assert a is not None
                ratios = ", ".join(
                    f"{be} {results[key][be] / a:.2f}x of its time ({a / results[key][be]:.1f}x "
                    "faster)"
                    for be in b.names()
                )
                print(f"  list {n:>7,} jobs: {a:.3f} s; ours: {ratios}")
            a_small, a_large = aps[small], aps[large]
            assert a_small is not None and a_large is not None
            alin = (a_large / large) / (a_small / small)
            print(f"  its linearity per-item(100k)/per-item(10k): {alin:.2f}")

    ok = all(v <= 3.0 for v in results["apply_10k"].values()) and all(
        v <= 1.0 for v in results["list_10k"].values()
    )
    print()
    print("goals met" if ok else "GOALS MISSED")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
