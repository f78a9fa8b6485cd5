"""A commit that changes no object (only a playbook, say) is still applied: the state records
the new revision, and runs check out that revision, so they run the new playbook.

Real Git repositories, the real CLI in subprocesses, a real ansible-playbook run on localhost.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.stores import open_store

from .conftest import CliRun, GitRepo

TEMPLATE = """apiVersion: reconciler/v1
kind: JobTemplate
metadata: {name: hello}
spec:
  type: orchestration
  playbook: playbooks/hello.yml
"""
PLAYBOOK = """- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {{msg: "hello from {version}"}}
"""


@pytest.fixture
def hello(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "hello")
    r.write("hello.yaml", TEMPLATE)
    r.write("playbooks/hello.yml", PLAYBOOK.format(version="version one"))
    r.commit("hello, version one")
    return r


def _revision(state: str) -> tuple[str | None, int, int]:
    with open_store(state) as s:
        info = s.info()
        return info.revision, info.serial, len(s.history())


@pytest.mark.slow
def test_a_playbook_only_commit_is_applied_and_the_next_run_runs_the_new_playbook(
    hello: GitRepo, tmp_path: Path, cli: CliRun
) -> None:
    state = str(tmp_path / "state.sqlite")
    first = cli("apply", str(hello.path), "--yes", "--state", state)
    assert first.code == 0, first.both
    one = hello.head
    hello.write("playbooks/hello.yml", PLAYBOOK.format(version="version two"))
    two = hello.commit("hello, version two")

    applied = cli("apply", str(hello.path), "--yes", "--state", state)
    assert applied.code == 0, applied.both
    assert "Nothing to apply" not in applied.out
    assert f"the applied revision moves from {one[:12]} to {two[:12]}" in applied.out
    assert f"revision {two[:12]}, state serial 2" in applied.out
    assert _revision(state) == (two, 2, 2)

    ran = cli("run", "hello", "--wait", "--format", "json", "--state", state, timeout=180)
    assert ran.code == 0, ran.both
    run = json.loads(ran.out)
    assert run["status"] == "succeeded" and run["commit"] == two
    log = cli("logs", str(run["id"]), "--state", state)
    assert "hello from version two" in log.out, log.both
    assert "version one" not in log.out


def test_plan_says_the_revision_moves_but_detailed_exitcode_counts_only_object_changes(
    hello: GitRepo, tmp_path: Path, cli: CliRun
) -> None:
    state = str(tmp_path / "state.sqlite")
    assert cli("apply", str(hello.path), "--yes", "--state", state).code == 0
    one = hello.head
    hello.write("playbooks/hello.yml", PLAYBOOK.format(version="version two"))
    two = hello.commit("hello, version two")

    text = cli("plan", str(hello.path), "--state", state, "--detailed-exitcode")
    assert text.code == 0, text.both
    assert (
        f"No changes to objects; the applied revision moves from {one[:12]} to {two[:12]}."
        in text.out
    )
    doc = json.loads(cli("plan", str(hello.path), "--state", state, "--format", "json").out)
    assert doc["revision"] == two and doc["applied_revision"] == one
    assert doc["revision_moves"] is True and doc["changes"] == []

    # and once applied, planning the same commit again says plainly that nothing changes
    assert cli("apply", str(hello.path), "--yes", "--state", state).code == 0
    again = cli("plan", str(hello.path), "--state", state, "--format", "json")
    assert json.loads(again.out)["revision_moves"] is False
    quiet = cli("plan", str(hello.path), "--state", state)
    assert "No changes. The state matches the desired state." in quiet.out
    nothing = cli("apply", str(hello.path), "--yes", "--state", state)
    assert "Nothing to apply." in nothing.out
    assert _revision(state) == (two, 2, 2)


def test_a_saved_plan_of_a_playbook_only_commit_records_the_revision(
    hello: GitRepo, tmp_path: Path, cli: CliRun
) -> None:
    state = str(tmp_path / "state.sqlite")
    assert cli("apply", str(hello.path), "--yes", "--state", state).code == 0
    hello.write("playbooks/hello.yml", PLAYBOOK.format(version="version two"))
    two = hello.commit("hello, version two")
    out = tmp_path / "plan.json"
    assert cli("plan", str(hello.path), "--state", state, "--out", str(out)).code == 0
    done = cli("apply", "--plan", str(out), "--state", state, "--format", "json")
    assert done.code == 0, done.both
    doc = json.loads(done.out)
    assert doc["applied"] is True and doc["serial"] == 2 and doc["revision"] == two
    assert _revision(state) == (two, 2, 2)
    stale = cli("apply", "--plan", str(out), "--state", state)
    assert stale.code == 1 and "serial 1, but the state is now at serial 2" in stale.err


def test_a_pull_request_plan_of_a_playbook_only_change_says_the_revision_moves(
    hello: GitRepo, cli: CliRun
) -> None:
    one = hello.head
    hello.write("playbooks/hello.yml", PLAYBOOK.format(version="version two"))
    two = hello.commit("hello, version two")
    p = cli("plan", str(hello.path), "--base", one, "--rev", two, "--detailed-exitcode")
    assert p.code == 0, p.both
    assert f"the applied revision moves from {one[:12]} to {two[:12]}" in p.out
