"""Benchmark: loading and validating a 10,000-schedule repository (issue: the loader).

Run: python bench/bench_load.py [--schedules N] [--runs N]

Prints medians for our loader and, measured in the same run, the building blocks it is
compared with: PyYAML's C and pure loaders, ruamel.yaml's round-trip loader, pydantic
validation, and listing a 10,000-file commit with pygit2, GitPython and `git ls-tree`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.repo_gen import commit_one_change, generate, schedule_doc  # noqa: E402

PY = sys.executable


def median_of(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def cli(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU of the child) of one `python -m reconciler ...` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(
        [PY, "-m", "reconciler", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def row(label: str, value: float, unit: str, goal: str = "", extra: str = "") -> None:
    shown = f"{value * 1000:.2f} ms" if unit == "ms" else f"{value:.3f} s"
    print(f"  {label:<58} {shown:>12}  {goal:<12} {extra}")


def baselines(doc: bytes, repo: Path, runs: int) -> None:
    import yaml

    print("building blocks (median per call)")
    n = 200
    c_load = (
        median_of(lambda: [yaml.load(doc, Loader=yaml.CSafeLoader) for _ in range(n)], runs) / n
    )
    row("PyYAML CSafeLoader, one 30-line document", c_load, "ms")
    py_load = (
        median_of(lambda: [yaml.load(doc, Loader=yaml.SafeLoader) for _ in range(n)], runs) / n
    )
    row("PyYAML pure SafeLoader, same document", py_load, "ms", extra=f"{py_load / c_load:.1f}x C")
    try:
        from ruamel.yaml import YAML

        rt = YAML(typ="rt")
        r_load = median_of(lambda: [rt.load(doc) for _ in range(n // 4)], runs) / (n // 4)
        row(
            "ruamel.yaml round-trip loader, same document",
            r_load,
            "ms",
            extra=f"{r_load / c_load:.1f}x C",
        )
    except ImportError:
        print("  ruamel.yaml not installed: skipped")
    from reconciler.loading.loader import load_file

    ours = median_of(lambda: [load_file("s.yaml", doc) for _ in range(n)], runs) / n
    row(
        "reconciler load_file: parse + validate + canonical JSON",
        ours,
        "ms",
        extra=f"{ours / c_load:.2f}x PyYAML C load",
    )
    from reconciler.model.documents import Schedule

    data = yaml.load(doc, Loader=yaml.CSafeLoader)
    pyd = median_of(lambda: [Schedule.model_validate(data) for _ in range(n)], runs) / n
    row("pydantic validation of the parsed document", pyd, "ms")

    import pygit2

    def list_pygit2() -> int:
        r = pygit2.Repository(str(repo))
        count = 0
        stack = [r.head.peel(pygit2.Commit).tree]
        while stack:
            for e in stack.pop():
                if e.type_str == "tree":
                    stack.append(r[e.id])
                else:
                    count += 1
        return count

    lp = median_of(list_pygit2, runs)
    row("list (path, blob SHA) of the commit: pygit2", lp, "ms")
    try:
        import git

        def list_gitpython() -> int:
            g = git.Repo(str(repo), odbt=git.GitDB)
            return sum(1 for _ in g.head.commit.tree.traverse())

        lg = median_of(list_gitpython, max(1, runs // 2))
        row(
            "list (path, blob SHA) of the commit: GitPython (pure GitDB)",
            lg,
            "ms",
            extra=f"{lg / lp:.1f}x pygit2",
        )
    except ImportError:
        print("  GitPython not installed: skipped")
    ll = median_of(
        lambda: subprocess.run(
            ["git", "ls-tree", "-r", "HEAD"], cwd=repo, capture_output=True, check=True
        ),
        runs,
    )
    row(
        "list (path, blob SHA) of the commit: git ls-tree -r",
        ll,
        "ms",
        extra=f"{ll / lp:.1f}x pygit2",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--schedules", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        repo = generate(Path(tmp) / "repo", args.schedules)
        print(f"repository: {args.schedules} schedule files, one commit ({repo})\n")
        baselines(schedule_doc(1).encode(), repo, args.runs)

        print("\nreconciler (medians)")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        colds = []
        for i in range(max(1, args.runs // 2)):
            env["RECONCILER_CACHE_DIR"] = f"{tmp}/cache-cold-{i}"
            colds.append(cli(["validate", str(repo), "--rev", "HEAD"], env))
        row(
            "validate, cold cache: CPU (process total)",
            statistics.median(c for _, c in colds),
            "s",
            "goal <= 4 s",
        )
        env["RECONCILER_CACHE_DIR"] = f"{tmp}/cache-cold-0"
        warm = [cli(["validate", str(repo), "--rev", "HEAD"], env) for _ in range(args.runs)]
        row(
            "validate again, same revision: CLI wall (with start-up)",
            statistics.median(w for w, _ in warm),
            "s",
        )

        os.environ["RECONCILER_CACHE_DIR"] = f"{tmp}/cache-cold-0"
        from reconciler.engine import desired
        from reconciler.loading.loader import Loader
        from reconciler.sources.cache import SqliteParseCache

        now = datetime.now(UTC)

        def fresh_load(rev: str) -> None:
            desired._loader = Loader(SqliteParseCache(f"{tmp}/cache-cold-0"))
            _, result = desired.load_repo(str(repo), rev, "head", now)
            assert result.ok, result.diagnostics[:3]

        same = median_of(lambda: fresh_load("HEAD"), args.runs)
        row("load again, same revision: in-process (disk cache)", same, "s", "goal <= 0.3 s")
        one_change = []
        for i in range(args.runs):
            commit_one_change(repo, i=100 + i, tweak=i + 1)
            one_change.append(median_of(lambda: fresh_load("HEAD"), 1))
        row(
            "load a revision that changes one file: in-process",
            statistics.median(one_change),
            "s",
            "goal <= 0.3 s",
        )
        commit_one_change(repo, i=999, tweak=3)
        one_cli = cli(["validate", str(repo), "--rev", "HEAD"], env)
        row("validate a revision that changes one file: CLI wall", one_cli[0], "s")

        helps = [cli(["--help"], env)[0] for _ in range(max(5, args.runs))]
        row("reconciler --help: wall", statistics.median(helps), "s", "goal <= 0.15 s")


if __name__ == "__main__":
    main()
