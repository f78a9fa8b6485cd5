"""``pause``, ``resume``, ``assume-ownership`` and ``clone`` through the real CLI on real Git
working trees: each edits only the lines it must (comments, order, quoting and the other
documents of the file stay byte for byte), refuses a result that would not validate without
touching the file, and with ``--commit`` commits that one file as the configured author."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gitutil import git

ROOT = Path(__file__).resolve().parents[2]

REPORTS = ROOT / "example-repo" / "schedules" / "reports.yaml"


def cli(repo: Path, *args: str, check: int = 0) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "RECONCILER_CACHE_DIR": str(repo.parent / "cache"),
        "RECONCILER_STATE": str(repo.parent / "state.sqlite"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == check, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "example-repo", root)
    # a file with what round trips tend to lose: comments everywhere, quoting styles, a
    # block sequence with its own indentation, flow mappings, three documents
    (root / "schedules" / "web.yaml").write_text(
        "# the release train\n"
        "apiVersion: reconciler/v1\n"
        "kind: Schedule\n"
        "metadata:\n"
        "  name: deploy-web-weekly   # keep this name\n"
        "  labels: {team: 'web', tier: \"front\"}\n"
        "spec:\n"
        "  template: deploy-web\n"
        "  owner: carol\n"
        "  targets:\n"
        "    roles:\n"
        "      - web    # every front end\n"
        "    environments: [staging]\n"
        "  when:\n"
        '    weekly: {days: [tue, thu], at: "06:30"}\n'
        "    jitter: 5m\n"
        "\n"
        "  # the release tag and the registry token\n"
        "  variables:\n"
        "    release: 'stable'\n"
        "    registry_token: {valueFrom: {env: REGISTRY_TOKEN}}\n"
        "  overlap: skip\n"
        "---\n"
        "apiVersion: reconciler/v1\n"
        "kind: Schedule\n"
        "metadata: {name: deploy-web-canary}\n"
        "spec:\n"
        "    template: deploy-web\n"
        "    owner: carol\n"
        "    targets: {servers: [web-1]}\n"
        "    when: {daily: {at: '05:00'}}   # early\n"
        "    variables: {release: canary}\n"
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Op Erator")
    git(root, "config", "user.email", "op@example.com")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "example")
    return root


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def test_pause_and_resume_change_only_their_lines_and_resume_restores_the_file(
    repo: Path,
) -> None:
    path = repo / "schedules" / "web.yaml"
    original = path.read_text()
    out = cli(repo, "pause", "deploy-web-weekly", "--note", "freeze: release week").stdout
    assert "Pause schedule deploy-web-weekly" in out and "schedules/web.yaml" in out
    paused = path.read_text()
    assert changed_lines(original, paused) == (
        [],
        ["  enabled: false", "  pauseNote: 'freeze: release week'"],
    )
    # the other document (four-space indentation) is untouched
    assert paused.split("---\n")[1] == original.split("---\n")[1]
    again = cli(repo, "pause", "deploy-web-weekly", "--note", "freeze: release week", check=1)
    assert "paused already" in again.stderr
    cli(repo, "resume", "deploy-web-weekly")
    assert path.read_text() == original
    not_paused = cli(repo, "resume", "deploy-web-weekly", check=1)
    assert "is not paused" in not_paused.stderr


def test_a_document_indented_by_four_spaces_keeps_its_indentation(repo: Path) -> None:
    path = repo / "schedules" / "web.yaml"
    original = path.read_text()
    cli(repo, "assume-ownership", "deploy-web-canary", "--as", "bob")
    assert changed_lines(original, path.read_text()) == (["    owner: carol"], ["    owner: bob"])


def test_assume_ownership_by_someone_who_may_not_run_it_is_refused_and_changes_nothing(
    repo: Path,
) -> None:
    path = repo / "schedules" / "web.yaml"
    original = path.read_text()
    gone = cli(repo, "assume-ownership", "deploy-web-weekly", "--as", "mallory", check=1)
    assert 'owner "mallory" is not a Policy user' in gone.stderr
    assert "schedules/web.yaml:9:" in gone.stderr  # the diagnostic names file and line
    assert "nothing was changed" in gone.stderr
    assert path.read_text() == original
    as_json = cli(
        repo,
        "assume-ownership",
        "deploy-web-weekly",
        "--as",
        "mallory",
        "--format",
        "json",
        check=1,
    )
    data = json.loads(as_json.stdout)
    assert data["error"]["code"] == "invalid-result"
    assert [d["code"] for d in data["diagnostics"]] == ["ref-owner"]


def test_clone_appends_a_paused_copy_and_an_invalid_name_is_refused(repo: Path) -> None:
    original = REPORTS.read_text()
    path = repo / "schedules" / "reports.yaml"
    assert path.read_text() == original
    cli(repo, "clone", "disk-report-daily", "disk-report-hourly")
    after = path.read_text()
    assert after.startswith(original)  # everything before stays byte for byte
    copy = after[len(original) :]
    assert copy.startswith("---\n")
    assert "  name: disk-report-hourly\n" in copy
    assert "  enabled: false\n  pauseNote: cloned from disk-report-daily\n" in copy
    assert 'when: {daily: {at: "02:00"}}' in copy  # quoting kept in the copy
    listed = cli(repo, "validate", ".").stdout
    assert "error" not in listed
    bad = cli(repo, "clone", "disk-report-daily", "Not_A_Name", check=1)
    assert "name-invalid" in bad.stderr and path.read_text() == after
    twice = cli(repo, "clone", "disk-report-daily", "disk-report-hourly", check=1)
    assert "name-duplicate" in twice.stderr and path.read_text() == after


def test_commit_commits_that_file_alone_as_the_configured_author_and_never_pushes(
    repo: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    remote_head = git(remote, "rev-parse", "main")
    (repo / "notes.txt").write_text("staged, not for this commit\n")
    git(repo, "add", "notes.txt")
    before = git(repo, "rev-parse", "HEAD")
    out = json.loads(
        cli(
            repo,
            "pause",
            "deploy-web-weekly",
            "--note",
            "db migration",
            "--commit",
            "--format",
            "json",
        ).stdout
    )
    head = git(repo, "rev-parse", "HEAD")
    assert out["commit"] == head and git(repo, "rev-parse", "HEAD~1") == before
    assert git(repo, "log", "-1", "--format=%an <%ae>|%s") == (
        "Op Erator <op@example.com>|Pause schedule deploy-web-weekly: db migration"
    )
    assert git(repo, "show", "--name-only", "--format=", "HEAD") == "schedules/web.yaml"
    assert git(repo, "status", "--porcelain") == "A  notes.txt"  # still staged, not committed
    assert git(remote, "rev-parse", "main") == remote_head  # nothing pushed
    # the commit is what apply reads: the schedule is paused once applied
    cli(repo, "apply", ".", "--yes")
    rows = json.loads(cli(repo, "schedules", "--format", "json").stdout)["schedules"]
    assert {r["name"]: r["state"] for r in rows}["deploy-web-weekly"] == "paused"


def test_what_cannot_be_edited_says_why_in_one_line(repo: Path, tmp_path: Path) -> None:
    unknown = cli(repo, "pause", "deploy-web-weekley", check=1)
    assert 'did you mean "deploy-web-weekly"' in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    url = cli(repo, "pause", "x", "--repo", "https://example.com/ops.git", check=1)
    assert "edit a working tree" in url.stderr
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    refused = cli(repo, "pause", "deploy-web-weekly", "--repo", str(bare), check=1)
    assert "bare repository" in refused.stderr
    plain = tmp_path / "plain"
    shutil.copytree(ROOT / "example-repo", plain)
    no_git = cli(plain, "pause", "deploy-web-weekly", "--commit", check=1)
    assert "--commit needs a Git working tree" in no_git.stderr
