"""Benchmarks of the time engine (issue 3). Run: ``python bench/bench_time.py [--quick]``.

Prints medians of several repetitions:

1. first fire time for 100,000 mixed schedules (Unix and Quartz cron, daily/weekly/monthly,
   every; five time zones), process CPU time, with cold parse and zone caches (goal <= 2 s);
2. the same on the Unix-cron part of the workload with croniter and cronsim as baselines,
   measured in the same run (croniter on a smaller sample, scaled; said so in the output);
3. the next slot of an already-loaded schedule, per call (goal <= 20 us median), after one
   shared instant and after each schedule's own previous slot;
4. ``reconciler cron explain`` end to end as a subprocess, wall clock (goal <= 200 ms).

croniter and cronsim are optional: they are benchmark baselines, not product dependencies.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.model.schedule import When  # noqa: E402
from reconciler.scheduling import build_trigger  # noqa: E402
from reconciler.scheduling import cron as cron_module  # noqa: E402
from reconciler.scheduling import triggers as triggers_module  # noqa: E402
from reconciler.scheduling import zones as zones_module  # noqa: E402

ZONES = ["UTC", "UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]
NOW = datetime(2026, 6, 15, 12, 34, 56, tzinfo=UTC)
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
QDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def unix_expr(r: random.Random) -> str:
    m, h, d, dow = r.randrange(60), r.randrange(24), r.randint(1, 28), r.randrange(7)
    return r.choice(
        [
            f"{m} {h} * * *",
            f"*/{r.choice([5, 10, 15, 20, 30])} * * * *",
            f"{m} {h} * * {dow}",
            f"{m} {h} {d} * *",
            f"{m} */{r.choice([2, 3, 4, 6])} * * *",
            f"{m} {h} * * 1-5",
            f"{m} {h}-{min(h + 8, 23)} * * *",
            f"{m} {h} {d} {r.randint(1, 12)} *",
            f"{m} {h} 1,15 * *",
            r.choice(["@hourly", "@daily", "@weekly", "@monthly", "@yearly"]),
        ]
    )


def quartz_expr(r: random.Random) -> str:
    s, m, h = r.randrange(60), r.randrange(60), r.randrange(24)
    return r.choice(
        [
            f"0 {m} {h} ? * MON-FRI",
            f"{s} {m} {h} * * ?",
            f"0 {m} {h} L * ?",
            f"0 {m} {h} ? * {r.choice(QDAYS)}#{r.randint(1, 4)}",
            f"0 0/{r.choice([5, 15, 30])} {h}-{min(h + 6, 23)} * * ?",
            f"0 {m} {h} {r.randint(1, 28)}W * ?",
            f"0 {m} {h} ? * {r.randint(1, 7)}L",
            f"0 {m} {h} 1 1/3 ? *",
        ]
    )


def workload(n: int, seed: int = 3) -> list[dict[str, Any]]:
    r = random.Random(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        tz = r.choice(ZONES)
        kind = r.random()
        at = f"{r.randrange(24):02d}:{r.randrange(60):02d}"
        if kind < 0.45:
            w: dict[str, Any] = {"cron": unix_expr(r)}
        elif kind < 0.65:
            w = {"cron": quartz_expr(r)}
        elif kind < 0.75:
            w = {"daily": {"at": at}}
        elif kind < 0.82:
            w = {"weekly": {"days": r.sample(DAYS, r.randint(1, 3)), "at": at}}
        elif kind < 0.90:
            w = {"monthly": {"day": r.choice([1, 15, 28, 31, "last"]), "at": at}}
        else:
            w = {"every": r.choice(["5m", "15m", "1h", "6h", "1d"])}
        w["timezone"] = tz
        out.append(w)
    return out


def cpu(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def clear_caches() -> None:
    """Forget every parse and every zone: each repetition starts cold, like a fresh process."""
    cron_module.clear_caches()
    triggers_module._CALENDARS.clear()
    zones_module.clear_caches()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10x smaller workloads")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    n = 10_000 if args.quick else 100_000
    reps = args.reps

    raw = workload(n)
    whens = [When.model_validate(w) for w in raw]  # the loader's job, not timed
    distinct = len({w.get("cron") or repr(w) for w in raw})
    print(
        f"python {sys.version.split()[0]}; {n:,} schedules ({distinct:,} distinct `when`s); "
        f"median of {reps} runs"
    )

    # 1. first fire time, cold caches
    def first_fires() -> None:
        clear_caches()
        for w in whens:
            build_trigger(w, "UTC").next_after(NOW)

    ours = cpu(first_fires, reps)
    print(
        f"[1] first fire time, {n:,} mixed schedules: {ours:.3f} s CPU "
        f"({ours / n * 1e6:.1f} us each; goal <= 2 s)"
    )

    # 2. baselines on the Unix part of the same workload
    unix = [
        (w["cron"], w["timezone"])
        for w in raw
        if "cron" in w and (len(w["cron"].split()) == 5 or w["cron"].startswith("@"))
    ]
    # the baselines get the macros spelt out (cronsim does not read them)
    spelt = [(cron_module.MACROS.get(c, c), tz) for c, tz in unix]
    unix_whens = [When.model_validate({"cron": c, "timezone": tz}) for c, tz in unix]

    def ours_unix() -> None:
        clear_caches()
        for w in unix_whens:
            build_trigger(w, "UTC").next_after(NOW)

    t_ours = cpu(ours_unix, reps) / len(unix)
    print(f"[2] Unix-cron subset ({len(unix):,} expressions): ours {t_ours * 1e6:.1f} us each")
    starts = {tz: NOW.astimezone(ZoneInfo(tz)) for tz in set(ZONES)}
    try:
        from cronsim import CronSim

        def run_cronsim() -> None:
            for c, tz in spelt:
                next(CronSim(c, starts[tz]))

        t_cs = cpu(run_cronsim, reps) / len(unix)
        print(
            f"    cronsim: {t_cs * 1e6:.1f} us each -> {t_cs * n:.2f} s per {n:,}; "
            f"ours is {t_cs / t_ours:.1f}x faster"
        )
    except ImportError:
        print("    cronsim: not installed (pip install cronsim)")
    try:
        from croniter import croniter  # type: ignore[import-untyped]

        sample = spelt[: max(1, len(spelt) // 5)]

        def run_croniter() -> None:
            for c, tz in sample:
                croniter(c, starts[tz]).get_next(datetime)

        t_ci = cpu(run_croniter, reps) / len(sample)
        print(
            f"    croniter: {t_ci * 1e6:.1f} us each (measured on {len(sample):,}, scaled) -> "
            f"{t_ci * n:.2f} s per {n:,}; ours is {t_ci / t_ours:.1f}x faster"
        )
    except ImportError:
        print("    croniter: not installed (pip install croniter)")

    # 3. next slot of an already-loaded schedule, per call: all after one `now` (as the
    # loader and the daemon's tick ask), and each after its own previous slot (no instant
    # shared between calls, so nothing a zone remembers about the last instant helps)
    loaded = [build_trigger(w, "UTC") for w in whens[:20_000]]
    firsts = [tr.next_after(NOW) or NOW for tr in loaded]

    def per_call(afters: list[datetime]) -> tuple[float, float]:
        ns = []
        for tr, after in zip(loaded, afters, strict=True):
            t0 = time.perf_counter_ns()
            tr.next_after(after)
            ns.append(time.perf_counter_ns() - t0)
        return statistics.median(ns) / 1000, statistics.quantiles(ns, n=10)[-1] / 1000

    med, p90 = per_call([NOW] * len(loaded))
    med_own, p90_own = per_call(firsts)
    print(
        f"[3] next slot of a loaded schedule: median {med:.1f} us, p90 {p90:.1f} us "
        f"(goal <= 20 us median); after its own previous slot: median {med_own:.1f} us, "
        f"p90 {p90_own:.1f} us"
    )

    # 4. cron explain end to end
    cmd = [
        sys.executable,
        "-m",
        "reconciler",
        "cron",
        "explain",
        "0 15 10 ? * MON-FRI",
        "--timezone",
        "Europe/Berlin",
        "--count",
        "5",
    ]
    walls = []
    for _ in range(max(reps, 7)):
        started = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
    print(
        f"[4] `reconciler cron explain` end to end: median {statistics.median(walls) * 1000:.0f}"
        f" ms wall (goal <= 200 ms)"
    )


if __name__ == "__main__":
    main()
