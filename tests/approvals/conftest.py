"""Helpers of the approvals suite: a small repository with a template that needs approval,
committed by named authors with the real ``git`` CLI, and applied as ``reconciler apply`` and
the daemon apply it (with the commit authors of each change)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from textwrap import dedent

from reconciler.engine.planning import (
    apply_plan,
    desired_for,
    load_tracked_source,
    plan_against_state,
)
from reconciler.model.desired import DesiredState
from reconciler.planning.plan import Plan
from reconciler.stores import StateStore
from tests.daemon.conftest import serves as serves  # the fixture that stops every serve
from tests.gitutil import git

#: users: alice and frank write changes; bob and erin lead (approve on everything); carol
#: is named an approver but holds no approve; ops owns the schedules
POLICY = """
    apiVersion: reconciler/v1
    kind: Policy
    metadata: {name: ops}
    spec:
      users:
        - {name: alice, email: alice@example.com, forgeLogins: [alice-gh], groups: [dev, leads]}
        - {name: bob, email: Bob@Example.com, forgeLogins: [bobby], groups: [leads]}
        - {name: carol, email: carol@example.com, groups: []}
        - {name: erin, email: erin@example.com, groups: [leads]}
        - {name: frank, email: frank@example.com, groups: [dev]}
        - {name: ops, email: ops@example.com, groups: []}
      permissions:
        - {group: leads, approve: ["*"]}
        - {user: ops, run: ["*"]}
    """

FILES = {
    "reconciler.yaml": """
        apiVersion: reconciler/v1
        kind: Settings
        spec: {timezone: UTC}
        """,
    "inventory.yaml": """
        apiVersion: reconciler/v1
        kind: Inventory
        metadata: {name: dc}
        spec:
          roles: {web: {}, db: {}}
          servers:
            - {name: web-1, host: 127.0.0.1, roles: [web]}
            - {name: web-2, host: 127.0.0.1, roles: [web]}
            - {name: db-1, host: 127.0.0.1, roles: [db]}
        """,
    "policy.yaml": POLICY,
    "templates/deploy.yaml": """
        apiVersion: reconciler/v1
        kind: JobTemplate
        metadata: {name: deploy}
        spec:
          playbook: playbooks/deploy.yml
          approval: {required: true, approvers: ["group:leads", carol], count: 1}
        """,
    "templates/report.yaml": """
        apiVersion: reconciler/v1
        kind: JobTemplate
        metadata: {name: report}
        spec:
          playbook: playbooks/deploy.yml
        """,
    "playbooks/deploy.yml": """
        - hosts: all
          gather_facts: false
          tasks:
            - debug: {msg: deploy}
        """,
    "schedules/nightly.yaml": """
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {name: nightly}
        spec:
          template: deploy
          owner: ops
          targets: {roles: [web]}
          when: {daily: {at: "02:00"}}
        """,
    "schedules/plain.yaml": """
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {name: plain}
        spec:
          template: report
          owner: ops
          when: {daily: {at: "03:00"}}
        """,
}


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dedent(text).lstrip())


def commit(root: Path, author: str, message: str = "change") -> str:
    """Commit everything as ``author`` (``author@example.com``); returns the SHA."""
    git(root, "add", "-A")
    env = {"GIT_AUTHOR_NAME": author.title(), "GIT_AUTHOR_EMAIL": f"{author}@example.com"}
    git(root, "commit", "-q", "--allow-empty", "-m", message, env=env)
    return git(root, "rev-parse", "HEAD")


def make_repo(root: Path, author: str = "alice", extra: dict[str, str] | None = None) -> Path:
    """The files above (and ``extra``) in a new repository, committed by ``author``."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    for rel, text in {**FILES, **(extra or {})}.items():
        write(root, rel, text)
    commit(root, author, "initial")
    return root


def desired_at(root: Path, rev: str | None, now: datetime) -> DesiredState:
    from reconciler.engine.desired import load_repo

    _, result = load_repo(str(root), rev or "HEAD", "head", now)
    assert result.desired is not None, [d.message for d in result.diagnostics]
    return result.desired


def apply_head(store: StateStore, root: Path, now: datetime) -> Plan:
    """Apply the head of ``main`` as ``reconciler apply`` does (authors included)."""
    source, result = load_tracked_source(str(root), None, now)
    desired, disabled = desired_for(result, store)
    assert desired is not None, [d.message for d in result.diagnostics]
    plan = plan_against_state(desired, store, now, timedelta(days=7), disabled)
    apply_plan(store, plan, now, str(root), source.git)
    return plan
