"""A run whose applied repository is gone fails with a message that says where it looked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.engine.planning import open_state
from tests.gitutil import git

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_whose_repository_moved_fails_naming_the_recorded_location(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "example-repo", repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "example")
    state = str(tmp_path / "state.sqlite")
    runner = CliRunner()
    applied = runner.invoke(cli, ["apply", str(repo), "--yes", "--state", state])
    assert applied.exit_code == 0, applied.output
    shutil.move(repo, tmp_path / "elsewhere")
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "run", "disk-report", "--wait", "--state", state],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "cannot check out commit" in line and str(repo) in line
    with open_state(state) as store:
        [run] = store.list_runs()
    assert run.status == "failed" and str(repo) in (run.message or "")
