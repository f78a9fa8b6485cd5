"""Repositories that Git allows but that are easy to misread: a tracked branch that is gone.

Each is a real repository made with the ``git`` CLI and read through the real CLI, as a
subprocess where the exit path matters.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.gitutil import git

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "tests" / "golden" / "validate" / "_base"


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_STATE"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def make_repo(path: Path, branch_line: str = "") -> Path:
    shutil.copytree(BASE, path)
    if branch_line:
        settings = path / "reconciler.yaml"
        settings.write_text(settings.read_text() + branch_line)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    return path


def test_a_settings_branch_that_does_not_exist_is_an_error_not_a_fall_back_to_head(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", "  branch: release\n")
    state = tmp_path / "state.sqlite"
    for args in (["plan"], ["apply", "--yes"], ["plan", "--format", "json"]):
        line = one_line(cli(*args, str(repo), "--state", str(state)))
        assert f'branch "release" does not exist in {repo}' in line, line
        assert "Settings branch" in line and "--rev" in line, line
    assert not state.exists()
    # a revision given on the command line is read whatever the tracked branch
    assert cli("plan", str(repo), "--rev", "HEAD", "--state", str(state)).returncode == 0
    git(repo, "branch", "release")
    done = cli("plan", str(repo), "--state", str(state))
    assert done.returncode == 0, done.stderr
    assert git(repo, "rev-parse", "release")[:12] in done.stdout
    # a checkout whose HEAD does not validate still names the branch, and the branch is read
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "schedules" / "broken.yaml").write_text("apiVersion: reconciler/v1\nkind: Bogus\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "broken")
    done = cli("plan", str(repo), "--state", str(state))
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(repo, "rev-parse", "release")[:12] in done.stdout


def test_a_detached_head_after_the_tracked_branch_was_deleted_is_an_error(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", "  branch: main\n")
    git(repo, "checkout", "-q", "--detach")
    git(repo, "branch", "-q", "-D", "main")
    line = one_line(cli("plan", str(repo), "--state", str(tmp_path / "state.sqlite")))
    assert f'branch "main" does not exist in {repo}' in line, line
    # the branch, where Settings does not name one, is main: the same
    plain = make_repo(tmp_path / "plain")
    git(plain, "checkout", "-q", "-b", "feature")
    git(plain, "branch", "-q", "-D", "main")
    line = one_line(cli("apply", str(plain), "--yes", "--state", str(tmp_path / "s2.sqlite")))
    assert 'branch "main" does not exist' in line, line
