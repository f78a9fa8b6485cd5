"""Helpers of the planning suite: real Git repositories made with the ``git`` CLI, fresh states
on both backends (SQLite and PostgreSQL; PostgreSQL unreachable fails, never skips), and the
CLI run as a subprocess.

Commits get fixed author and committer dates, so a repository built from the same files has
the same commit SHAs on every run (golden plans may show them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.engine.desired import load_repo
from reconciler.engine.planning import apply_plan, plan_against_state
from reconciler.model.desired import DesiredState
from reconciler.planning.plan import Plan
from reconciler.stores import StateStore

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
BASE = GOLDEN / "_base"
NOW = datetime(2025, 10, 24, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


class GitRepo:
    """A repository on disk, driven through the ``git`` command line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tick = 0
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        self._tick += 1
        stamp = f"2025-01-01T00:{self._tick // 60:02d}:{self._tick % 60:02d}+00:00"
        env = {
            **os.environ,
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_DATE": stamp,
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.path),
        }
        out = subprocess.run(
            ["git", "-c", "user.name=Alice", "-c", "user.email=alice@example.com", *args],
            cwd=self.path,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def write(self, rel: str, text: str) -> None:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def remove(self, rel: str) -> None:
        (self.path / rel).unlink()

    def copy_in(self, folder: Path) -> None:
        # shutil.copy, not copy2: a copied mtime can make git's index think an edited file of
        # the same size is unchanged
        shutil.copytree(folder, self.path, dirs_exist_ok=True, copy_function=shutil.copy)

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    @property
    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    """A repository holding the golden base (Settings, Inventory, Policy, two templates, two
    schedules), committed once."""
    r = GitRepo(tmp_path / "repo")
    r.copy_in(BASE)
    r.commit("base")
    return r


def desired_of(repo: GitRepo | Path, rev: str | None = None, now: datetime = NOW) -> DesiredState:
    """The desired state of ``rev`` (default HEAD); fails the test on diagnostics."""
    path = repo.path if isinstance(repo, GitRepo) else repo
    _, result = load_repo(str(path), rev or "HEAD", "head", now)
    assert result.desired is not None, [str(d) for d in result.diagnostics]
    return result.desired


def plan_repo(
    store: StateStore, repo: GitRepo, rev: str | None = None, now: datetime = NOW
) -> Plan:
    return plan_against_state(desired_of(repo, rev, now), store, now, WEEK)


def apply_repo(
    store: StateStore, repo: GitRepo, rev: str | None = None, now: datetime = NOW
) -> int:
    """Plan and apply ``rev``; the new serial."""
    return apply_plan(store, plan_repo(store, repo, rev, now), now)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err


CliRun = Callable[..., Result]


@pytest.fixture
def cli(tmp_path: Path) -> CliRun:
    """Run ``python -m reconciler ARGS`` as a subprocess from the worktree root, with its own
    cache directory and no state in the environment; ``env`` adds variables."""
    cache = tmp_path / "cli-cache"

    def run(
        *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60
    ) -> Result:
        full = {k: v for k, v in os.environ.items() if k != "RECONCILER_STATE"}
        full["RECONCILER_CACHE_DIR"] = str(cache)
        full["PYTHONPATH"] = str(ROOT)
        full.update(env or {})
        p = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            cwd=ROOT,
            env=full,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(p.returncode, p.stdout, p.stderr)

    return run
