"""Where the state lives: a state path that cannot be created, a state in a read-only
directory, and a state whose rows were edited by hand. One clear line each, never a traceback;
the commands that only read work on a read-only state.

Root writes anywhere, whatever the permission bits say, so the read-only directory is a real
read-only bind mount, made in a private mount namespace (``unshare --mount``) around the one
CLI process that needs it: it is gone when that process exits.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.stores import NewRun, open_store
from tests.gitutil import git

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_STATE"}
    env["RECONCILER_CACHE_DIR"] = str(tmp / "cache")
    env["PYTHONPATH"] = str(ROOT)
    return env


def reconciler(
    tmp: Path, *args: str, cwd: Path | None = None, readonly: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m reconciler ARGS`` in ``cwd``; with ``readonly``, that directory is mounted
    read-only for this one process (which enters ``cwd`` after the mount, so it sees it)."""
    cmd = [sys.executable, "-m", "reconciler", *args]
    where = cwd or tmp
    if readonly is not None:
        d, here = shlex.quote(str(readonly)), shlex.quote(str(where))
        inner = f"mount --bind -o ro {d} {d} && cd {here} && exec {shlex.join(cmd)}"
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]
    return subprocess.run(
        cmd,
        cwd=where,
        env=_env(tmp),
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = tmp_path_factory.mktemp("location") / "repo"
    shutil.copytree(ROOT / "example-repo", r)
    git(r, "init", "-q", "-b", "main")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "example")
    return r


@pytest.fixture(scope="module")
def applied_once(repo: Path) -> Path:
    """A state with the example applied and one finished run with a log."""
    state = repo.parent / "applied" / "state.sqlite"
    done = reconciler(repo.parent, "apply", str(repo), "--yes", "--state", str(state))
    assert done.returncode == 0, done.stderr
    with open_store(state) as s:
        run = s.create_run(NewRun("motd", "cli", s.info().revision), NOW)
        assert run is not None
        s.append_log(run.id, "PLAY [all] ok\n")
        s.finish_run(run.id, "succeeded", NOW)
    assert sorted(p.name for p in state.parent.iterdir()) == ["state.sqlite"]
    return state


@pytest.fixture
def applied(applied_once: Path, tmp_path: Path) -> Path:
    """A copy of that state of this test's own, alone in ``tmp/ro/``."""
    state = tmp_path / "ro" / "state.sqlite"
    state.parent.mkdir()
    shutil.copyfile(applied_once, state)
    return state


def test_the_read_only_mount_really_stops_root_from_writing(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    probe = ["sh", "-c", f"touch {shlex.quote(str(ro / 'probe'))}"]
    d = shlex.quote(str(ro))
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount --bind -o ro {d} {d} && exec {shlex.join(probe)}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0 and "Read-only file system" in done.stderr, done
    assert not (ro / "probe").exists()


# -- a state path that cannot be created ------------------------------------------------------


def test_apply_with_a_file_in_the_way_of_the_state_directory_names_the_file(
    repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("a file, not a directory\n")
    state = tmp_path / "taken" / "states" / "state.sqlite"
    line = one_error_line(reconciler(tmp_path, "apply", str(repo), "--yes", "--state", str(state)))
    assert f"{tmp_path / 'taken'} is a file, not a directory" in line


def test_apply_with_a_state_under_a_read_only_directory_says_so(repo: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    state = ro / "states" / "state.sqlite"
    done = reconciler(tmp_path, "apply", str(repo), "--yes", "--state", str(state), readonly=ro)
    line = one_error_line(done)
    assert str(ro / "states") in line and "read-only file system" in line
    assert not (ro / "states").exists()


def test_apply_to_an_existing_state_in_a_read_only_directory_says_it_cannot_write_it(
    repo: Path, applied: Path, tmp_path: Path
) -> None:
    done = reconciler(
        tmp_path, "apply", str(repo), "--yes", "--state", str(applied), readonly=applied.parent
    )
    line = one_error_line(done)
    assert f"cannot write the state {applied}" in line and "read-only file system" in line


def test_apply_with_the_default_state_in_a_read_only_working_directory_says_what_to_do(
    repo: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    done = reconciler(tmp_path, "apply", str(repo), "--yes", cwd=work, readonly=work)
    line = one_error_line(done)
    assert ".reconciler" in line and "read-only file system" in line
    assert "--state" in line and "RECONCILER_STATE" in line
    assert not (work / ".reconciler").exists()


# -- reading a state in a read-only directory ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["schedules"], "motd-drift-production"),
        (["runs"], "succeeded"),
        (["runs", "show", "1"], "succeeded"),
        (["logs", "1"], "PLAY [all] ok"),
        (["drift"], "No drift recorded yet"),
        (["plan", "REPO"], "No changes. The state matches the desired state."),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_reading_command_works_on_a_state_in_a_read_only_directory(
    repo: Path, applied: Path, tmp_path: Path, args: list[str], says: str
) -> None:
    argv = [str(repo) if a == "REPO" else a for a in args]
    done = reconciler(tmp_path, *argv, "--state", str(applied), readonly=applied.parent)
    assert done.returncode == 0, done.stderr
    assert says in done.stdout
    assert done.stderr == ""
    assert sorted(p.name for p in applied.parent.iterdir()) == ["state.sqlite"]


def test_a_reader_in_a_read_only_directory_sees_what_a_live_writer_just_wrote(
    applied: Path, tmp_path: Path
) -> None:
    """With a writer at work the state is not frozen: the reader reads the write-ahead log."""
    with open_store(applied) as writer:
        run = writer.create_run(NewRun("motd", "cli", None, message="just now"), NOW)
        assert run is not None
        assert (applied.parent / "state.sqlite-wal").exists()
        done = reconciler(
            tmp_path, "runs", "--format", "json", "--state", str(applied), readonly=applied.parent
        )
        assert done.returncode == 0, done.stderr
        assert [r["id"] for r in json.loads(done.stdout)["runs"]] == [run.id, 1]


def test_a_reading_command_never_leaves_files_beside_a_state_it_could_write(
    applied: Path, tmp_path: Path
) -> None:
    """Reading goes through a normal connection where it can, which cleans up after itself
    (SQLite's ``mode=ro`` would leave the WAL and its index behind)."""
    for args in (["runs"], ["schedules"], ["logs", "1"]):
        done = reconciler(tmp_path, *args, "--state", str(applied))
        assert done.returncode == 0, done.stderr
        assert sorted(p.name for p in applied.parent.iterdir()) == ["state.sqlite"]


# -- rows edited by hand -------------------------------------------------------------------


@pytest.fixture
def damaged(applied: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    with sqlite3.connect(applied) as conn:
        conn.execute(request.param)
    yield applied


@pytest.mark.parametrize(
    ("damaged", "names"),
    [
        ("UPDATE rc_objects SET body = '[]' WHERE kind = 'JobTemplate'", 'JobTemplate "'),
        ("UPDATE rc_objects SET body = '{}' WHERE kind = 'JobTemplate'", 'JobTemplate "'),
        ("UPDATE rc_objects SET body = '{}' WHERE kind = 'Schedule'", 'Schedule "'),
        ("UPDATE rc_objects SET body = '[]' WHERE kind = '_Servers'", "_Servers"),
        ("UPDATE rc_meta SET applied_at = 'yesterday'", "rc_meta.applied_at"),
    ],
    indirect=["damaged"],
)
@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_state_row_edited_by_hand_is_one_line_naming_it(
    repo: Path, damaged: Path, tmp_path: Path, names: str, command: str
) -> None:
    args = [command, str(repo), "--state", str(damaged)] + (["--yes"] if command == "apply" else [])
    if "Schedule" in names:  # an unchanged schedule is never read: make the commit touch it
        work = tmp_path / "edited"
        shutil.copytree(repo, work)
        sched = next((work / "schedules").glob("*.yaml"))
        sched.write_text(sched.read_text().replace("description:", "description: edited;", 1))
        git(work, "commit", "-q", "-am", "edit a schedule")
        args[1] = str(work)
    line = one_error_line(reconciler(tmp_path, *args))
    assert names in line and "damaged" in line and str(damaged) in line


@pytest.mark.parametrize(
    "damaged",
    ["UPDATE rc_objects SET body = '[]' WHERE kind = 'Settings'"],
    indirect=True,
)
def test_schedules_on_a_hand_edited_settings_row_is_one_line(damaged: Path, tmp_path: Path) -> None:
    line = one_error_line(reconciler(tmp_path, "schedules", "--state", str(damaged)))
    assert "Settings" in line and "damaged" in line


def test_a_hand_edited_template_body_is_one_line_for_run(tmp_path: Path) -> None:
    import sqlite3
    import subprocess
    import sys

    from reconciler.stores import open_store

    state = tmp_path / "state.sqlite"
    repo = Path(__file__).resolve().parents[2] / "example-repo"
    subprocess.run(
        [sys.executable, "-m", "reconciler", "apply", str(repo), "--yes", "--state", str(state)],
        check=True,
        capture_output=True,
        text=True,
    )
    open_store(state).close()
    with sqlite3.connect(state) as conn:
        conn.execute("UPDATE rc_objects SET body = '{}' WHERE kind = 'JobTemplate'")
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "run", "disk-report", "--wait", "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "damaged" in lines[0] and "disk-report" in lines[0]
