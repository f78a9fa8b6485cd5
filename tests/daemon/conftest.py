"""Helpers of the daemon suite: a small desired state written as files, applied to a real
state store (SQLite, and PostgreSQL where a test asks for both backends)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from textwrap import dedent

import pytest

from reconciler.engine.desired import load_repo
from reconciler.engine.planning import apply_plan, plan_against_state
from reconciler.stores import StateStore, open_store


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
