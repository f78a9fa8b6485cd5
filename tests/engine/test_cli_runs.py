"""`reconciler run`, `runs`, `logs` and `drift` against real ansible-playbook runs.

A Git repository is made from example-repo, applied to a SQLite state, and jobs are run
through the real CLI in subprocesses: the local servers of the example inventory use the
local connection, so every run is a real ansible-playbook run on this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.executors.worker import descendants
from tests.gitutil import git

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable

pytestmark = pytest.mark.slow


class Cli:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state.sqlite"
        self.env = {
            **os.environ,
            "RECONCILER_STATE": str(self.state),
            "RECONCILER_CACHE_DIR": str(tmp / "cache"),
            "PYTHONPATH": str(ROOT),
        }

    def __call__(self, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [PY, "-m", "reconciler", *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check is not None:
            assert done.returncode == check, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str, check: int | None = 0) -> dict[str, object]:
        out: dict[str, object] = json.loads(self(*args, "--format", "json", check=check).stdout)
        return out


SLOW_TEMPLATE = """apiVersion: reconciler/v1
kind: JobTemplate
metadata: {name: slow}
spec:
  playbook: playbooks/slow.yml
  timeout: 5m
"""
SLOW_PLAYBOOK = """- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.command: sleep 41
"""


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, Path]:
    tmp = tmp_path_factory.mktemp("runs")
    repo = tmp / "repo"
    shutil.copytree(ROOT / "example-repo", repo)
    inventory = repo / "inventory.yaml"
    inventory.write_text(
        inventory.read_text().replace(
            "    staging: {description: Pre-release",
            "    disaster-recovery: {description: Not built yet}\n"
            "    staging: {description: Pre-release",
        )
    )
    (repo / "templates" / "slow.yaml").write_text(SLOW_TEMPLATE)
    (repo / "playbooks" / "slow.yml").write_text(SLOW_PLAYBOOK)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "example")
    cli = Cli(tmp)
    cli("apply", str(repo), "--yes")
    return cli, tmp


def test_a_configuration_job_finds_drift_on_the_edited_server_only_and_fixes_it(
    applied: tuple[Cli, Path],
) -> None:
    cli, tmp = applied
    root = tmp / "managed"
    args = ("run", "motd", "--env", "production", "--var", f"managed_root={root}", "--wait")
    first = cli.json(*args)
    assert first["status"] == "succeeded" and first["trigger"] == "cli"
    assert set(first["hosts"]) == {"web-1", "web-2", "db-1"}  # type: ignore[arg-type]
    clean = cli.json(*args)
    assert all(h["drifted"] == 0 for h in clean["hosts"].values())  # type: ignore[union-attr]
    motd = root / "web-2" / "motd"
    motd.write_text("edited by hand\n")
    fixed = cli.json(*args)
    hosts = fixed["hosts"]
    assert {n for n, h in hosts.items() if h["drifted"]} == {"web-2"}  # type: ignore[union-attr]
    assert "edited by hand" not in motd.read_text()
    drift = cli.json("drift", "--server", "web-2")["drift"]
    assert [(d["template"], d["state"], d["details"]["outcome"]) for d in drift] == [  # type: ignore[index,union-attr]
        ("motd", "in-sync", "fixed")
    ]
    again = cli.json(*args)
    assert all(h["drifted"] == 0 for h in again["hosts"].values())  # type: ignore[union-attr]


def test_a_variable_from_the_command_line_is_data_and_never_a_template(
    applied: tuple[Cli, Path],
) -> None:
    cli, tmp = applied
    marker = tmp / "MARKER"
    payload = "{{ lookup('pipe', 'touch " + str(marker) + "') }}"
    run = cli.json(
        "run", "deploy-web", "--server", "web-1", "--var", f"release={payload}", "--wait"
    )
    assert run["status"] == "succeeded"
    assert not marker.exists()
    log = cli("logs", str(run["id"])).stdout
    assert "lookup('pipe'" in log  # printed literally by the debug task


def test_a_sensitive_value_is_used_but_lands_nowhere_on_disk(applied: tuple[Cli, Path]) -> None:
    cli, tmp = applied
    secret = "S3CRET-token-7f1e9a"
    run = cli.json(
        "run",
        "deploy-web",
        "--server",
        "web-1",
        "--var",
        "release=1.2",
        "--var",
        f"registry_token={secret}",
        "--wait",
    )
    assert run["status"] == "succeeded"
    assert run["variables"]["registry_token"] != secret  # type: ignore[index]
    log = cli("logs", str(run["id"])).stdout
    assert secret not in log
    for path in tmp.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    with sqlite3.connect(cli.state) as db:
        dump = "\n".join(db.iterdump())
    assert secret not in dump


def test_a_finished_run_is_retried_as_a_new_run_with_the_same_request(
    applied: tuple[Cli, Path],
) -> None:
    cli, _tmp = applied
    first = cli.json("run", "deploy-web", "--server", "web-1", "--var", "release=7.1", "--wait")
    again = cli.json("retry", str(first["id"]), "--wait")
    assert again["id"] != first["id"] and again["status"] == "succeeded"
    assert (again["trigger"], again["retry_of"]) == ("retry", first["id"])
    assert again["variables"] == first["variables"] and again["targets"] == first["targets"]
    assert "release" in cli("logs", str(again["id"])).stdout
    shown = cli("runs", "show", str(again["id"])).stdout
    assert f"a retry of run {first['id']}" in shown
    # the original is untouched
    assert cli.json("runs", "show", str(first["id"]))["status"] == "succeeded"


def test_a_run_that_cannot_be_retried_says_why_in_one_line(applied: tuple[Cli, Path]) -> None:
    cli, _tmp = applied
    secret = cli.json(
        "run",
        "deploy-web",
        "--server",
        "web-1",
        "--var",
        "release=1",
        "--var",
        "registry_token=abc-123-secret",
        "--wait",
    )
    refused = cli("retry", str(secret["id"]), check=1)
    assert "sensitive variable 'registry_token'" in refused.stderr
    assert "abc-123-secret" not in refused.stderr
    missing = cli("retry", "999999", check=1)
    assert "no run 999999" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    as_json = cli("retry", "999999", "--format", "json", check=1)
    assert json.loads(as_json.stdout)["error"]["message"].startswith("no run 999999")


def test_mistakes_in_a_run_request_give_one_clear_line(applied: tuple[Cli, Path]) -> None:
    cli, _ = applied
    unknown = cli("run", "motdd", "--wait", check=1)
    assert 'no template "motdd"' in unknown.stderr and "motd" in unknown.stderr
    server = cli("run", "motd", "--server", "web-9", "--wait", check=1)
    assert 'unknown server "web-9"' in server.stderr
    nothing = cli("run", "motd", "--role", "db", "--env", "nowhere", "--wait", check=1)
    assert 'unknown environment "nowhere"' in nothing.stderr
    missing = cli("run", "deploy-web", "--server", "web-1", "--wait", check=1)
    assert 'required variable "release"' in missing.stderr
    typed = cli(
        "run",
        "deploy-web",
        "--server",
        "web-1",
        "--var",
        "release=1",
        "--var",
        "batch_size=many",
        "--wait",
        check=1,
    )
    assert 'variable "batch_size" must be an integer' in typed.stderr
    for done in (unknown, server, nothing, missing, typed):
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_targets_that_match_no_server_are_refused_before_anything_runs(
    applied: tuple[Cli, Path],
) -> None:
    cli, _ = applied
    before = len(cli.json("runs", "--limit", "500")["runs"])  # type: ignore[arg-type]
    refused = cli("run", "disk-report", "--env", "disaster-recovery", "--wait", check=1)
    assert "match no server" in refused.stderr
    assert len(cli.json("runs", "--limit", "500")["runs"]) == before  # type: ignore[arg-type]


def test_a_background_run_can_be_followed_until_it_ends(applied: tuple[Cli, Path]) -> None:
    cli, _ = applied
    queued = cli("run", "disk-report", "--server", "db-1")
    run_id = queued.stdout.split()[1]
    follow = cli("logs", run_id, "--follow")
    assert "PLAY RECAP" in follow.stdout
    shown = cli.json("runs", "show", run_id)
    assert shown["status"] == "succeeded" and shown["hosts"]["db-1"]["ok"] >= 1  # type: ignore[index]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _children_of_run(run_id):
        time.sleep(0.2)
    assert not _children_of_run(run_id)


def _children_of_run(run_id: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [
        line
        for line in out.splitlines()
        if f"reconciler-run-{run_id}-" in line or f"detached {run_id} " in line
    ]


def test_runs_lists_the_contract_keys_newest_first(applied: tuple[Cli, Path]) -> None:
    cli, _ = applied
    runs = cli.json("runs", "--limit", "3")["runs"]
    assert isinstance(runs, list) and 1 <= len(runs) <= 3
    ids = [r["id"] for r in runs]
    assert ids == sorted(ids, reverse=True)
    for r in runs:
        assert {
            "id",
            "schedule",
            "template",
            "trigger",
            "slot",
            "status",
            "commit",
            "started",
            "finished",
            "hosts",
        } <= set(r)
        assert len(r["commit"]) == 40
        for h in r["hosts"].values():
            assert set(h) == {
                "status",
                "ok",
                "changed",
                "failed",
                "unreachable",
                "skipped",
                "drifted",
            }


def test_a_background_run_stopped_with_sigterm_is_cancelled_and_leaves_no_process(
    applied: tuple[Cli, Path],
) -> None:
    cli, _ = applied
    run_id = cli("run", "slow").stdout.split()[1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _sleepers():
        time.sleep(0.2)
    assert _sleepers(), "the playbook never started"
    worker = [line.split()[0] for line in _children_of_run(run_id) if "detached" in line]
    assert worker, _children_of_run(run_id)
    os.kill(int(worker[0]), 15)
    status = ""
    while time.monotonic() < deadline:
        status = str(cli.json("runs", "show", run_id)["status"])
        if status not in ("queued", "running"):
            break
        time.sleep(0.3)
    assert status == "cancelled"
    assert "cancelled by the user" in cli("logs", run_id).stdout
    while time.monotonic() < deadline and (_sleepers() or _children_of_run(run_id)):
        time.sleep(0.2)
    assert not _sleepers() and not _children_of_run(run_id)


def _sleepers() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "sleep 41" in line and "ps -eo" not in line]


PR_SET_CHILD_SUBREAPER = 36


def _subreaper(on: bool) -> None:
    """While on, processes orphaned below this one (a detached run once its command has
    returned) are re-parented to it, so they stay visible as descendants."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def _reap_children() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _below_me(before: set[int]) -> dict[int, tuple[bytes, bytes]]:
    """cmdline and environ of every process below this one that is not in ``before``."""
    out: dict[int, tuple[bytes, bytes]] = {}
    for pid in set(descendants(os.getpid())) - before:
        with contextlib.suppress(OSError):
            out[pid] = (
                Path(f"/proc/{pid}/cmdline").read_bytes(),
                Path(f"/proc/{pid}/environ").read_bytes(),
            )
    return out


def test_a_background_run_inherits_no_variable_that_git_names_as_a_secret(
    applied: tuple[Cli, Path],
) -> None:
    cli, _ = applied
    # example-repo names REGISTRY_TOKEN (a schedule's valueFrom) and OPS_WEBHOOK_SECRET (a
    # channel's secretFrom): set where `reconciler run` runs, as they would be for the daemon
    secrets = {n: f"{n}-{os.urandom(6).hex()}" for n in ("REGISTRY_TOKEN", "OPS_WEBHOOK_SECRET")}
    before = set(descendants(os.getpid()))  # what other tests left (multiprocessing's helper)
    _subreaper(True)
    try:
        started = subprocess.run(
            [PY, "-m", "reconciler", "run", "slow"],
            env={**cli.env, **secrets},
            cwd=cli.tmp,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.split()[1]
        deadline = time.monotonic() + 60
        procs = _below_me(before)
        while not any(c == b"sleep\x0041\x00" for c, _ in procs.values()):
            assert time.monotonic() < deadline, "the playbook never started"
            time.sleep(0.1)
            procs = _below_me(before)
        detached = [p for p, (c, _) in procs.items() if b"reconciler.engine.detached" in c]
        assert detached and any(b"ansible-playbook" in c for c, _ in procs.values())
        # the state URL (a PostgreSQL one may hold a password) is not on any command line
        state = cli.env["RECONCILER_STATE"].encode()
        assert not [c for c, _ in procs.values() if state in c]
        for name, value in secrets.items():
            leaked = [c for c, e in procs.values() if value.encode() in e or value.encode() in c]
            assert leaked == [], (name, leaked)
        os.kill(detached[0], signal.SIGTERM)
        while cli.json("runs", "show", run_id)["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert cli.json("runs", "show", run_id)["status"] == "cancelled"
        while _below_me(before):
            _reap_children()
            assert time.monotonic() < deadline, _below_me(before)
            time.sleep(0.1)
    finally:
        _stop_below_me(before)
        _subreaper(False)


def _stop_below_me(before: set[int]) -> None:
    """After a failure: SIGTERM what the test left below this process (a detached run cancels
    its run), SIGKILL it after 20 s, and reap it."""
    end = time.monotonic() + 20
    for pid in _below_me(before):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    while _below_me(before) and time.monotonic() < end:
        _reap_children()
        time.sleep(0.1)
    for pid in _below_me(before):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    _reap_children()
