"""``reconciler validate`` end to end: output formats, Git revisions, errors without tracebacks.

Everything is real: files on disk, Git repositories made with the ``git`` CLI, and the CLI
itself (in-process through click, or as a subprocess where the exit path matters).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from tests.gitutil import git

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "tests" / "golden" / "validate" / "_base"
EXAMPLE = ROOT / "example-repo"

BAD_SCHEDULE = """\
apiVersion: reconciler/v1
kind: Schedule
metadata:
  name: deploy-web-nightly
spec:
  template: deploy-wbe
  owner: bob
  targets: {roles: [db], environments: [staging]}
  when:
    daily: {at: "02:00"}
  variables:
    release: stable
    registry_token: {valueFrom: {env: REGISTRY_TOKEN}}
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: a new process, through ``main`` and its error handling."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def bad_repo(tmp_path: Path) -> Path:
    """The base repository with an unknown template and targets that match no server."""
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    (repo / "schedules" / "deploy-web-nightly.yaml").write_text(BAD_SCHEDULE)
    return repo


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A Git repository whose only commit is the valid base repository."""
    repo = tmp_path / "gitrepo"
    shutil.copytree(BASE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def test_the_example_repository_validates_clean_with_exit_0() -> None:
    code, out, err = invoke("validate", str(EXAMPLE))
    assert code == 0
    assert out == ""
    assert "ok: 15 documents, no problems" in err


def test_json_format_has_exactly_the_keys_of_the_contract(bad_repo: Path) -> None:
    code, out, _ = invoke("validate", str(bad_repo), "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert set(data) == {"diagnostics", "errors", "warnings"}
    assert (data["errors"], data["warnings"]) == (1, 1)
    required = {"path", "line", "column", "severity", "code", "message"}
    for d in data["diagnostics"]:
        assert required <= set(d) <= required | {"hint"}
    by_code = {d["code"]: d for d in data["diagnostics"]}
    template = by_code["ref-template"]
    # 1-based: "deploy-wbe" is on line 6, column 13 of the file
    assert (template["path"], template["line"], template["column"]) == (
        "schedules/deploy-web-nightly.yaml",
        6,
        13,
    )
    assert template["severity"] == "error"
    assert by_code["targets-empty"]["severity"] == "warning"


def test_json_format_of_a_clean_repository_is_an_empty_list() -> None:
    code, out, _ = invoke("validate", str(EXAMPLE), "--format", "json")
    assert code == 0
    assert json.loads(out) == {"diagnostics": [], "errors": 0, "warnings": 0}


def test_github_format_prints_workflow_commands_with_file_line_and_column(bad_repo: Path) -> None:
    code, out, _ = invoke("validate", str(bad_repo), "--format", "github")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(
        "::error file=schedules/deploy-web-nightly.yaml,line=6,col=13,title=ref-template::"
    )
    assert 'unknown template "deploy-wbe"' in lines[0]
    assert 'did you mean "deploy-web"?' in lines[0]
    assert lines[1].startswith("::warning file=schedules/deploy-web-nightly.yaml,line=8,col=12,")


def test_validate_reads_the_working_tree_and_rev_reads_the_commit(git_repo: Path) -> None:
    (git_repo / "schedules" / "deploy-web-nightly.yaml").write_text(BAD_SCHEDULE)
    code, out, _ = invoke("validate", str(git_repo))
    assert code == 1
    assert "ref-template" in out
    code, out, err = invoke("validate", str(git_repo), "--rev", "HEAD")
    assert (code, out) == (0, "")
    assert f"commit {git(git_repo, 'rev-parse', 'HEAD')[:12]}" in err
    # and once committed, the revision has the error too
    git(git_repo, "commit", "-q", "-am", "typo")
    code, out, _ = invoke("validate", str(git_repo), "--rev", "HEAD")
    assert code == 1
    assert "ref-template" in out
    code, out, _ = invoke("validate", str(git_repo), "--rev", "HEAD~1")
    assert (code, out) == (0, "")


def test_an_unknown_revision_exits_1_with_one_line_and_no_traceback(git_repo: Path) -> None:
    proc = run_cli("validate", str(git_repo), "--rev", "no-such-branch")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f'error: revision "no-such-branch" does not exist in {git_repo}'
    ]


def test_rev_on_a_directory_that_is_not_a_git_repository_exits_1_clearly(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(BASE, plain)
    proc = run_cli("validate", str(plain), "--rev", "HEAD")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: {plain} is not a Git repository, so --rev cannot be used"
    ]


def test_a_missing_repository_directory_exits_1_without_traceback(tmp_path: Path) -> None:
    proc = run_cli("validate", str(tmp_path / "nowhere"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {tmp_path / 'nowhere'} does not exist"


def test_a_committed_symlink_that_leaves_the_repository_is_reported_under_rev(
    git_repo: Path,
) -> None:
    os.symlink("../../../etc/ansible/site.yml", git_repo / "playbooks" / "site.yml")
    git(git_repo, "add", "playbooks/site.yml")
    git(git_repo, "commit", "-q", "-m", "link out")
    os.unlink(git_repo / "playbooks" / "site.yml")  # gone from the working tree only
    code, out, _ = invoke("validate", str(git_repo))
    assert (code, out) == (0, "")
    code, out, _ = invoke("validate", str(git_repo), "--rev", "HEAD")
    assert code == 1
    assert out.splitlines()[0] == (
        'playbooks/site.yml:1:1: error[symlink-escapes]: symlink "playbooks/site.yml" points '
        'outside the repository ("../../../etc/ansible/site.yml")'
    )
