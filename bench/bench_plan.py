"""Plan, apply and schedules benchmark (issue 4) on a generated Git repository.

    python bench/bench_plan.py [--schedules N] [--repeats R] [--no-pg] [--pg URL]

Medians of R runs. Goals for N = 10,000: cold ``plan`` (a subprocess with a fresh parse cache,
child CPU time) <= 5 s; ``plan`` after a one-file commit <= 0.5 s (in-process with the loader
warm, as the daemon runs it, and the CLI's wall time with a warm on-disk cache); ``apply`` of N
creates <= 3 s on SQLite and on PostgreSQL (plan against the empty state, then write, through
the engine); ``schedules`` listing of N <= 1 s; 10 x N listed to show linear scaling. APScheduler
3's SQLAlchemy job store listing the same numbers of jobs is measured in the same run when it
is installed (``bench/bench_store.py`` holds that baseline).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_store import (  # noqa: E402
    DEFAULT_PG,
    Backends,
    bench_apscheduler_list,
)
from bench.bench_store import schedules as store_schedules  # noqa: E402
from bench.repo_gen import commit_one_change, generate  # noqa: E402
from reconciler.cli.render_plan import plan_lines  # noqa: E402
from reconciler.engine import planning as eng  # noqa: E402
from reconciler.engine.listing import list_schedules  # noqa: E402
from reconciler.stores import open_store  # noqa: E402

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def cli(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, child CPU) of one ``python -m reconciler ...``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def row(label: str, value: float, goal: float | None = None, extra: str = "") -> None:
    verdict = "" if goal is None else ("  ok" if value <= goal else "  MISSED")
    goal_text = f"(goal <= {goal:g} s)" if goal is not None else ""
    print(f"{label:<52} {value:8.3f} s  {goal_text:<16}{verdict}{extra}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--schedules", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL admin URL")
    ap.add_argument("--no-pg", action="store_true")
    a = ap.parse_args(argv)
    n, reps = a.schedules, a.repeats
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        t = time.perf_counter()
        repo = generate(tmp / "repo", n)
        print(f"generated {n:,} schedules in {time.perf_counter() - t:.1f} s; medians of {reps}")
        base_env = {**os.environ, "PYTHONPATH": str(ROOT)}

        # cold plan: a fresh cache and no state, as a first run in CI
        cold = []
        for i in range(reps):
            env = {**base_env, "RECONCILER_CACHE_DIR": str(tmp / f"cold-{i}")}
            cold.append(cli(["plan", str(repo), "--state", str(tmp / f"none-{i}.db")], env))
        row(f"plan, cold, {n:,} schedules (CPU)", median([c for _, c in cold]), 5.0)
        row(f"plan, cold, {n:,} schedules (wall)", median([w for w, _ in cold]))

        # plan after a one-file commit, against an applied state
        warm_env = {**base_env, "RECONCILER_CACHE_DIR": str(tmp / "warm")}
        os.environ["RECONCILER_CACHE_DIR"] = str(tmp / "warm")
        state = str(tmp / "applied.db")
        cli(["apply", str(repo), "--state", state, "--yes"], warm_env)
        with open_store(state) as store:
            eng.load_tracked(str(repo), None, NOW)  # the daemon's loader is warm
            inproc = []
            for i in range(reps):
                commit_one_change(repo, i=7 + i, tweak=1 + i)
                t = time.perf_counter()
                where, res = eng.load_tracked(str(repo), None, NOW)
                assert res.desired is not None
                p = eng.plan_against_state(res.desired, store, NOW, WEEK)
                plan_lines(p, False, where)
                inproc.append(time.perf_counter() - t)
                assert p.summary["update"] == i + 1, p.summary
        row("plan after a one-file commit (in-process)", median(inproc), 0.5)
        walls = []
        for i in range(reps):
            commit_one_change(repo, i=100 + i, tweak=1)
            walls.append(cli(["plan", str(repo), "--state", state], warm_env)[0])
        row("plan after a one-file commit (CLI wall)", median(walls), 0.5)

        # apply of n creates through the engine, each backend
        _, res = eng.load_tracked(str(repo), None, NOW)
        assert res.desired is not None
        desired = res.desired
        with Backends(tmp, None if a.no_pg else a.pg) as b:
            for backend in b.names():
                samples = []
                for _ in range(reps):
                    with b.fresh(backend) as store:
                        t = time.perf_counter()
                        p = eng.plan_against_state(desired, store, NOW, WEEK)
                        eng.apply_plan(store, p, NOW)
                        samples.append(time.perf_counter() - t)
                        assert len(store.list_objects("Schedule")) == n
                row(f"apply, {n:,} creates, {backend} (engine)", median(samples), 3.0)

        # schedules listing: the applied repository, then n and 10 x n state rows
        walls = [cli(["schedules", "--state", state], warm_env)[0] for _ in range(reps)]
        row(f"schedules, {n:,} (CLI wall)", median(walls), 1.0)
        per_item: dict[int, float] = {}
        for size in (n, 10 * n):
            with open_store(tmp / f"list-{size}.db") as store:
                store.apply_changes(0, "0" * 40, store_schedules(size), [], NOW)
                samples = []
                for _ in range(reps):
                    t = time.perf_counter()
                    with redirect_stdout(io.StringIO()):
                        got = list_schedules(store, NOW, 3)
                    samples.append(time.perf_counter() - t)
                    assert len(got) == size
            value = median(samples)
            per_item[size] = value / size
            aps = bench_apscheduler_list(tmp, size, max(1, reps // 2))
            ratio = f"; APScheduler {aps:.3f} s, ratio {value / aps:.2f}x" if aps else ""
            row(f"schedules, {size:,} (in-process)", value, 1.0 if size == n else None, ratio)
        print(
            f"linearity: per-schedule time at {10 * n:,} / at {n:,} = "
            f"{per_item[10 * n] / per_item[n]:.2f} (1.00 = linear)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
