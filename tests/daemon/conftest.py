"""Helpers of the daemon suite: a small desired state written as files, applied to a real
state store (SQLite, and PostgreSQL where a test asks for both backends), and ``serve`` run as
a real process (:class:`Serve`, stopped by the ``serves`` fixture whatever the test did)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from textwrap import dedent

import pytest

from reconciler.engine.desired import load_repo
from reconciler.engine.firing import FiringLoop
from reconciler.engine.planning import apply_plan, plan_against_state
from reconciler.stores import StateStore, open_store
from tests.gitutil import git


@pytest.fixture
def open_state(state_url: str) -> Iterator[Callable[[], StateStore]]:
    """Open the test's state (SQLite or PostgreSQL) as often as asked: one connection per
    loop or replica, as the daemon does. Every store opened is closed at the end."""
    opened: list[StateStore] = []

    def open_one() -> StateStore:
        s = open_store(state_url, lock_timeout=10)
        opened.append(s)
        return s

    yield open_one
    for s in opened:
        s.close()


BASE = {
    "reconciler.yaml": """
        apiVersion: reconciler/v1
        kind: Settings
        spec: {timezone: UTC}
        """,
    "policy.yaml": """
        apiVersion: reconciler/v1
        kind: Policy
        metadata: {name: ops}
        spec:
          users:
            - {name: alice, email: alice@example.com, groups: [sre]}
            - {name: dave, email: dave@example.com, groups: []}
          permissions:
            - {group: sre, run: ["*"], approve: ["*"]}
        """,
    "templates.yaml": """
        apiVersion: reconciler/v1
        kind: JobTemplate
        metadata: {name: ping}
        spec:
          type: orchestration
          playbook: playbooks/ping.yml
          variables:
            - {name: greeting, type: string, default: hello}
        """,
    "playbooks/ping.yml": """
        - hosts: all
          gather_facts: false
          tasks:
            - debug: {msg: "{{ greeting }}"}
        """,
}


def schedule(name: str, when: str, **extra: str) -> str:
    lines = [
        "apiVersion: reconciler/v1",
        "kind: Schedule",
        f"metadata: {{name: {name}}}",
        "spec:",
        "  template: ping",
        f"  owner: {extra.pop('owner', 'alice')}",
        f"  when: {when}",
    ]
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def write_repo(root: Path, schedules: Mapping[str, str], extra: Mapping[str, str] = {}) -> Path:
    """The base documents plus ``schedules`` (file name -> YAML), as a plain directory."""
    for rel, text in {**BASE, **extra}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(dedent(text).lstrip())
    sched_dir = root / "schedules"
    if sched_dir.exists():
        for old in sched_dir.iterdir():
            old.unlink()
    sched_dir.mkdir(exist_ok=True)
    for name, text in schedules.items():
        (sched_dir / f"{name}.yaml").write_text(text)
    return root


def apply_dir(store: StateStore, root: Path, now: datetime) -> None:
    """Load ``root`` and apply it to ``store`` as ``reconciler apply`` does."""
    _, result = load_repo(str(root), None, "head", now)
    assert result.desired is not None, [d.message for d in result.diagnostics]
    plan = plan_against_state(result.desired, store, now, timedelta(days=7))
    if not plan.empty:
        apply_plan(store, plan, now, str(root))


class Serve:
    """One ``serve`` process; stopped (SIGKILL if it must) at the end of the test."""

    def __init__(self, repo: Path, state: str, *args: str, fake: str | None = "0.05") -> None:
        self.repo = repo
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if fake is not None:
            env["RECONCILER_TEST_FAKE_EXECUTOR"] = fake
        self.log = repo.parent / f"serve-{time.monotonic_ns()}.log"
        self._fh = self.log.open("w")
        # a read key for the API (made through the CLI, as a user would)
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler",
                "api-key",
                "create",
                f"t{time.monotonic_ns()}",
                "--scope",
                "read",
                "--state",
                state,
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        self.key = str(json.loads(made.stdout)["secret"])
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reconciler",
                "serve",
                str(repo),
                "--state",
                state,
                "--listen",
                "127.0.0.1:0",
                *args,
            ],
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.url = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.url:
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.log.read_text())
            if m:
                self.url = m.group(1)
            elif self.proc.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log.read_text()}")
            else:
                time.sleep(0.05)
        assert self.url, self.log.read_text()

    def get(self, path: str, key: str | None = "") -> dict[str, object]:
        """GET ``path`` with the read key (``key=None``: without one)."""
        req = urllib.request.Request(self.url + path)
        if key is not None:
            req.add_header("X-API-Key", key or self.key)
        with urllib.request.urlopen(req, timeout=5) as r:
            data: dict[str, object] = json.load(r)
            return data

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._fh.close()


@pytest.fixture
def serves() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for s in started:
        s.stop()


def make_repo(tmp_path: Path, docs: dict[str, str]) -> Path:
    root = write_repo(tmp_path / "repo", docs)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    return root


def until(cond: object, timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def running_loop(loop: FiringLoop) -> Iterator[None]:
    """``loop.run_forever`` in a thread, as the daemon runs it; stopped and joined at the end,
    and any error it reported fails the test."""
    errors: list[Exception] = []
    thread = threading.Thread(target=loop.run_forever, args=(errors.append,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert not errors, errors


def ledger_slots(store: StateStore, name: str) -> list[datetime]:
    """Every slot the ledger accounts for (ranges expanded: every 1s schedules)."""
    out: list[datetime] = []
    for e in store.list_slots(name, limit=100_000):
        out.extend(e.slot + timedelta(seconds=i) for i in range(e.count))
    return sorted(out)
