"""``reconciler approvals | approve | deny | dry-run`` through the real CLI entry point on a
real Git repository and a SQLite state: in this process (``reconciler.cli.main.main``, as the
console script calls it) for speed, and as a subprocess where the exit status and the one-line
error of a real process are the point."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli.main import main

from .conftest import commit, make_repo, write

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    def __init__(self, tmp: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.repo = tmp, repo
        self.state = str(tmp / "state.sqlite")
        monkeypatch.setenv("RECONCILER_STATE", self.state)
        monkeypatch.chdir(tmp)

    def __call__(
        self, *args: str, check: int = 0, process: bool = False
    ) -> subprocess.CompletedProcess[str]:
        if process:
            done = subprocess.run(
                [sys.executable, "-m", "reconciler", *args],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                cwd=self.tmp,
                capture_output=True,
                text=True,
                timeout=120,
            )
        else:
            out, err = io.StringIO(), io.StringIO()
            code: int = 0
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    main(list(args))
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else int(e.code is not None)
            done = subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
        assert done.returncode == check, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str, check: int = 0, process: bool = False) -> Any:
        return json.loads(self(*args, "--format", "json", check=check, process=process).stdout)

    def refused(self, *args: str, process: bool = False) -> str:
        """The one line a refused decision prints (exit 1)."""
        done = self(*args, check=1, process=process)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        return lines[0]

    def apply(self) -> None:
        self("apply", str(self.repo), "--yes")

    def queue(self) -> dict[str, Any]:
        return {e["schedule"]: e for e in self.json("approvals")["approvals"]}


def test_an_author_is_refused_others_approve_a_playbook_edit_and_a_denial_need_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", author="alice")
    cli = Cli(tmp_path, repo, monkeypatch)
    cli.apply()
    entry = cli.queue()["nightly"]
    assert entry["state"] == "awaiting-approval"
    assert (entry["template"], entry["author"], entry["approved_by"], entry["required"]) == (
        "deploy",
        "alice",
        [],
        1,
    )
    assert len(entry["content_hash"]) == 64
    assert "plain" not in cli.queue()
    line = cli.refused("approve", "nightly", "--as", "alice", process=True)
    assert "alice" in line and "authored this change" in line
    assert "does not hold approve" in cli.refused("approve", "nightly", "--as", "carol")
    err = cli.json("approve", "nightly", "--as", "carol", check=1, process=True)
    assert err["error"]["code"] == "approval-refused"
    assert "bob approved" in cli("approve", "nightly", "--as", "bob").stdout
    table = cli("approvals").stdout
    assert table.splitlines()[0].split()[:3] == ["SCHEDULE", "TEMPLATE", "STATE"]
    [row] = [line.split() for line in table.splitlines() if line.startswith("nightly ")]
    assert row[:5] == ["nightly", "deploy", "active", "1/1", "bob"]
    # a playbook-only edit: new content, to approve again
    write(repo, "playbooks/deploy.yml", "- hosts: all\n  tasks:\n    - debug: {msg: v2}\n")
    commit(repo, "frank", "playbook v2")
    cli.apply()
    entry = cli.queue()["nightly"]
    assert (entry["state"], entry["author"], entry["approved_by"]) == (
        "awaiting-approval",
        "frank",
        [],
    )
    # denied: nobody else can approve it until the content changes
    cli("deny", "nightly", "--as", "erin", "--reason", "not before the freeze ends")
    assert cli.queue()["nightly"]["state"] == "denied"
    assert "denied for this content" in cli.refused("approve", "nightly", "--as", "bob")
    text = (repo / "schedules/nightly.yaml").read_text()
    write(repo, "schedules/nightly.yaml", text.replace("02:00", "02:15"))
    commit(repo, "frank", "a bit later")
    cli.apply()
    assert cli.queue()["nightly"]["state"] == "awaiting-approval"
    cli("approve", "nightly", "--as", "bob")
    assert cli.queue()["nightly"]["state"] == "active"


def test_a_commit_granting_its_author_approve_and_count_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", author="frank")
    cli = Cli(tmp_path, repo, monkeypatch)
    cli.apply()
    # carol grants herself approve and raises the count in one commit
    policy = (repo / "policy.yaml").read_text()
    write(
        repo,
        "policy.yaml",
        policy.replace(
            "{group: leads, approve", "{user: carol, approve: ['*']}\n    - {group: leads, approve"
        ),
    )
    tmpl = (repo / "templates/deploy.yaml").read_text()
    write(repo, "templates/deploy.yaml", tmpl.replace("count: 1", "count: 2"))
    commit(repo, "carol", "I approve deploys now, and two people must")
    cli.apply()
    entry = cli.queue()["nightly"]
    assert (entry["author"], entry["required"]) == ("carol", 2)
    assert "authored this change" in cli.refused("approve", "nightly", "--as", "carol")
    out = cli.json("approve", "nightly", "--as", "bob")
    assert (out["recorded"], out["state"]) == (True, "awaiting-approval")
    assert "1 so far" in out["message"]
    out = cli.json("approve", "nightly", "--as", "erin")
    assert out["state"] == "active"
    assert cli.queue()["nightly"]["approved_by"] == ["bob", "erin"]


def test_a_past_due_at_needs_force_and_dry_run_queues_a_simulate_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    once = """
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {name: once}
        spec:
          template: deploy
          owner: ops
          when: {at: "2026-01-05T09:00:00"}
        """
    repo = make_repo(tmp_path / "repo", author="frank", extra={"schedules/once.yaml": once})
    cli = Cli(tmp_path, repo, monkeypatch)
    cli.apply()
    assert "no daemon" in cli("dry-run", "nightly").stdout
    run = cli.json("dry-run", "once")["run"]
    assert run["status"] == "queued" and run["simulate"] is True
    shown = cli.json("runs", "show", str(run["id"]))
    assert (shown["schedule"], shown["trigger"], shown["simulate"]) == ("once", "cli", True)
    assert cli.queue()["once"]["state"] == "awaiting-approval"  # a dry-run approves nothing
    line = cli.refused("approve", "once", "--as", "bob")
    assert "--force" in line and "2026-01-05T09:00:00+00:00" in line
    out = cli.json("approve", "once", "--as", "bob", "--force")
    assert out["state"] == "active" and "forced to run now" in out["message"]
    assert "no schedule" in cli.refused("dry-run", "nope")
    assert "needs no approval" in cli.refused("approve", "plain", "--as", "bob")
