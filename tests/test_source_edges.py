"""Repositories that Git allows but that are easy to misread: a tracked branch that is gone,
a bare repository, submodules, symlinks that lead nowhere.

Each is a real repository made with the ``git`` CLI and read through the real CLI, as a
subprocess where the exit path matters.
"""

from __future__ import annotations

import json
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


def test_validate_reads_the_head_of_a_bare_repository_and_says_so(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    head = git(repo, "rev-parse", "HEAD")
    done = cli("validate", str(bare))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == (
        f"ok: 6 documents, no problems (commit {head[:12]} of {bare}: HEAD, "
        "as a bare repository has no working tree)"
    )
    # what it reads is HEAD: an error committed there is found
    (repo / "templates" / "deploy-web.yaml").write_text("apiVersion: reconciler/v1\nkind: Bogus\n")
    git(repo, "commit", "-q", "-am", "bogus")
    git(bare, "fetch", "-q", str(repo), "+main:main")
    done = cli("validate", str(bare), "--format", "json")
    assert done.returncode == 1
    codes = {d["code"] for d in json.loads(done.stdout)["diagnostics"]}
    assert "kind-unknown" in codes
    empty = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", str(empty))
    assert "has no commits yet" in one_line(cli("validate", str(empty)))


def test_the_working_tree_skips_submodules_as_revisions_do(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "bad.yaml").write_text("apiVersion: reconciler/v1\nkind: Bogus\nmetadata: {name: x}\n")
    git(sub, "init", "-q", "-b", "main")
    git(sub, "add", "-A")
    git(sub, "commit", "-q", "-m", "sub")
    repo = make_repo(tmp_path / "repo")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "-q", "add", str(sub), "vendor/sub")
    git(repo, "commit", "-q", "-m", "add a submodule")
    # and a repository cloned inside the work tree without being added
    git(tmp_path, "clone", "-q", str(sub), str(repo / "scratch" / "clone"))
    assert (repo / "vendor" / "sub" / "bad.yaml").exists()
    worktree = cli("validate", str(repo), "--format", "json")
    commit = cli("validate", str(repo), "--rev", "HEAD", "--format", "json")
    assert (worktree.returncode, commit.returncode) == (0, 0), worktree.stdout
    assert json.loads(worktree.stdout) == json.loads(commit.stdout)
    assert "6 documents" in cli("validate", str(repo)).stderr
    # a plain directory (no Git around it) is read as it is, nested clones and all
    plain = tmp_path / "plain"
    shutil.copytree(repo, plain, ignore=shutil.ignore_patterns(".git"), symlinks=True)
    shutil.copytree(repo / "scratch" / "clone" / ".git", plain / "scratch" / "clone" / ".git")
    assert cli("validate", str(plain)).returncode == 1


def test_yaml_symlinks_that_lead_nowhere_and_symlink_loops_are_warned_about(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    os.symlink("missing.yaml", repo / "schedules" / "gone.yaml")
    os.symlink("b.yml", repo / "a.yml")
    os.symlink("a.yml", repo / "b.yml")
    os.symlink("loop", repo / "loop")  # a loop by any name
    os.symlink("nothing-here", repo / "notes.txt")  # not YAML: nobody would read it anyway
    os.symlink("deploy-web-nightly.yaml", repo / "schedules" / "alias.yaml")  # fine
    os.symlink("schedules", repo / "schedules.yaml")  # a directory named like YAML: fine
    expected = [
        ("a.yml", "symlink-loop"),
        ("b.yml", "symlink-loop"),
        ("loop", "symlink-loop"),
        ("schedules/gone.yaml", "symlink-dangling"),
    ]
    worktree = cli("validate", str(repo), "--format", "json")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "links")
    commit = cli("validate", str(repo), "--rev", "HEAD", "--format", "json")
    for done in (worktree, commit):
        assert done.returncode == 0, done.stdout
        report = json.loads(done.stdout)
        got = [(d["path"], d["code"]) for d in report["diagnostics"]]
        assert got == expected, got
        assert report["warnings"] == 4 and report["errors"] == 0
        assert all(
            (d["line"], d["column"], d["severity"]) == (1, 1, "warning")
            for d in report["diagnostics"]
        )
    text = cli("validate", str(repo))
    assert text.returncode == 0
    assert (
        'schedules/gone.yaml:1:1: warning[symlink-dangling]: symlink "schedules/gone.yaml" '
        'points to "schedules/missing.yaml", which does not exist, so it is not read'
    ) in text.stdout.splitlines()
    assert (
        'a.yml:1:1: warning[symlink-loop]: symlink "a.yml" leads back to itself ("b.yml") '
        "and never reaches a file"
    ) in text.stdout.splitlines()


def test_a_yaml_symlink_whose_target_is_not_utf8_and_a_fifo_named_yaml(tmp_path: Path) -> None:
    """Neither may crash or hang validate: the link is read as any other, the FIFO is refused
    in one line."""
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    target = os.fsdecode(b"caf\xe9.yaml")
    (repo / target).write_text("not: ours\n")
    os.symlink(target, repo / "link.yaml")
    done = cli("validate", str(repo), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    os.mkfifo(repo / "pipe.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", str(repo)],
        capture_output=True,
        text=True,
        timeout=30,  # the old code blocked here for ever, waiting for a writer
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert one_line(done).startswith("error: cannot read ") and "not a regular file" in done.stderr


def test_with_format_json_an_error_is_a_json_document_on_stdout(tmp_path: Path) -> None:
    done = cli("plan", str(tmp_path / "missing"), "--format", "json")
    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "error": {"code": "source-error", "message": f"{tmp_path / 'missing'} does not exist"}
    }
    assert one_line(done).startswith("error: ")
    done = cli("runs", "show", "7", "--state", str(tmp_path / "none.db"), "--format=json")
    assert done.returncode == 1 and json.loads(done.stdout)["error"]["message"]
