"""Bad input to plan and apply, run as subprocesses: each gets one clear line on stderr, exit
1, no traceback, and loses nothing. Also remote repositories (``file://`` URLs) and two
``apply --yes`` racing on one state."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.stores import open_store

from .conftest import ROOT, CliRun, GitRepo

TOKEN = "ghp_s3cretT0ken4242"


def one_line_error(r: object, *needles: str) -> None:
    code, out, err = r.code, r.out, r.err  # type: ignore[attr-defined]
    assert code == 1, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_unusable_repositories_get_one_clear_line(
    command: str, cli: CliRun, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    args = ["--yes"] if command == "apply" else []
    one_line_error(
        cli(command, str(tmp_path / "nope"), "--state", str(state), *args), "does not exist"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    one_line_error(cli(command, str(empty), "--state", str(state), *args), "has no commits yet")
    repo = GitRepo(tmp_path / "repo")
    repo.write("reconciler.yaml", "apiVersion: reconciler/v1\nkind: Settings\nspec: {}\n")
    repo.commit()
    one_line_error(
        cli(command, str(repo.path), "--rev", "no-such-branch", "--state", str(state), *args),
        'revision "no-such-branch" does not exist',
    )
    one_line_error(
        cli(command, "file:///nonexistent/repo.git", "--state", str(state), *args),
        "cannot fetch file:///nonexistent/repo.git",
    )
    url = f"https://deploy:{TOKEN}@127.0.0.1:9/org/repo.git"
    r = cli(command, url, "--state", str(state), *args)
    one_line_error(r, "cannot fetch https://***@127.0.0.1:9/org/repo.git")
    assert TOKEN not in r.out + r.err
    assert not state.exists()


def test_unusable_states_get_one_clear_line_and_are_left_as_they_were(
    repo: GitRepo, cli: CliRun, tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database\n" * 10)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    newer = tmp_path / "newer.db"
    open_store(newer).close()
    c = sqlite3.connect(newer)
    c.execute("UPDATE rc_meta SET schema_version = 99")
    c.commit()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # so the file alone holds the whole state
    c.close()
    cases = [
        (corrupt, "is not a reconciler state"),
        (foreign, "holds tables of another application (invoices)"),
        (newer, "written by a newer version of reconciler"),
    ]
    for path, message in cases:
        before = path.read_bytes()
        for args in (["plan"], ["apply", "--yes"], ["schedules"]):
            extra = [str(repo.path)] if args[0] != "schedules" else []
            one_line_error(cli(*args, *extra, "--state", str(path)), message)
        assert path.read_bytes() == before


def test_a_newer_postgresql_state_is_refused(repo: GitRepo, cli: CliRun, pg_url: str) -> None:
    open_store(pg_url).close()
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("UPDATE rc_meta SET schema_version = 99")
    one_line_error(cli("apply", str(repo.path), "--state", pg_url, "--yes"), "newer version")


def test_a_remote_repository_is_cloned_into_the_cache_and_fetched_again(
    cli: CliRun, tmp_path: Path, state_url: str
) -> None:
    origin = GitRepo(tmp_path / "origin")
    origin.copy_in(ROOT / "tests" / "planning" / "golden" / "_base")
    first = origin.commit("base")
    cache = tmp_path / "remote-cache"
    url = f"file://{origin.path}"
    env = {"RECONCILER_CACHE_DIR": str(cache)}
    r = cli("apply", url, "--state", state_url, "--yes", env=env)
    assert r.code == 0, r.both
    clones = list((cache / "repos").iterdir())
    assert len(clones) == 1 and (clones[0] / "HEAD").exists()
    origin.write("schedules/web-logs.yaml", "")
    second = origin.commit("remove web-logs")
    again = cli("plan", url, "--state", state_url, "--format", "json", env=env)
    assert again.code == 0, again.both
    assert '"revision": "' + second in again.out and '"delete"' in again.out
    assert cli("apply", url, "--state", state_url, "--yes", env=env).code == 0
    assert list((cache / "repos").iterdir()) == clones
    with open_store(state_url) as s:
        assert [h.revision for h in s.history()] == [second, first]


def test_two_applies_racing_on_one_state_leave_one_whole_result(
    repo: GitRepo, state_url: str, tmp_path: Path
) -> None:
    for i in range(12):  # more work per apply widens the window in which the two overlap
        repo.write(
            f"schedules/extra-{i:02d}.yaml",
            f"apiVersion: reconciler/v1\nkind: Schedule\nmetadata: {{name: extra-{i:02d}}}\n"
            f"spec: {{template: backup, owner: alice, when: {{every: {i + 1}h}}}}\n",
        )
    repo.commit("more")
    open_store(state_url).close()  # both find the schema in place
    env = {"RECONCILER_CACHE_DIR": str(tmp_path / "c"), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "reconciler", "apply", str(repo.path), "--state", state_url]
    procs = [
        subprocess.Popen(
            [*cmd, "--yes"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(60), *p.communicate()) for p in procs]
    winners = [r for r in results if r[0] == 0 and "Applied:" in r[1]]
    assert len(winners) == 1, results
    (loser,) = [r for r in results if r not in winners]
    assert "Traceback" not in loser[1] + loser[2]
    assert (loser[0] == 0 and "Nothing to apply." in loser[1]) or (
        loser[0] == 1 and "state changed since the plan was made" in loser[2]
    ), loser
    with open_store(state_url) as s:
        assert s.serial() == 1 and len(s.history()) == 1
        assert len(s.list_objects("Schedule")) == 14
