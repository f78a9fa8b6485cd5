"""An interrupted `reconciler run --wait` ends its run: SIGINT, SIGTERM and SIGHUP at any
moment give `cancelled` (exit 130), a killed process gives `abandoned` as soon as any command
opens the state, a run over its timeout gives `timed-out`; none leaves a process, a checkout or
an Ansible work directory behind.

Real `python -m reconciler` processes get real signals; TMPDIR points at a directory of the
test, which must be empty afterwards. This process is a child subreaper meanwhile, so whatever
a killed command leaves running is re-parented to it and seen (and reaped) here.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.engine import running as eng
from reconciler.engine.planning import open_state
from reconciler.executors.fake import FakeExecutor, Script
from reconciler.executors.spec import RunOutcome
from reconciler.executors.worker import descendants
from reconciler.model.common import Targets
from reconciler.stores import open_store
from tests.gitutil import git

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

TEMPLATES = """apiVersion: reconciler/v1
kind: JobTemplate
metadata: {name: nap}
spec:
  playbook: playbooks/nap.yml
  timeout: 5m
---
apiVersion: reconciler/v1
kind: JobTemplate
metadata: {name: brief}
spec:
  playbook: playbooks/nap.yml
  timeout: 2s
"""
PLAYBOOK = """- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.command: sleep 30
"""


@dataclass
class Env:
    tmp: Path
    state: Path
    tmpdir: Path  # TMPDIR of every command

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RECONCILER_STATE": str(self.state),
            "RECONCILER_CACHE_DIR": str(self.tmp / "cache"),
            "PYTHONPATH": str(ROOT),
            "TMPDIR": str(self.tmpdir),
        }

    def start(self, *args: str, hup: object = signal.SIG_DFL) -> subprocess.Popen[bytes]:
        """The command as a process; ``hup``: the SIGHUP disposition it starts with (a
        process inherits an ignored one: under ``nohup`` the whole test run has it)."""
        out = (self.tmp / "out.txt").open("wb")
        previous = signal.signal(signal.SIGHUP, hup)  # type: ignore[arg-type]
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "reconciler", *args],
                env=self.env(),
                cwd=self.tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            signal.signal(signal.SIGHUP, previous)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            env=self.env(),
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def statuses(self) -> dict[int, str]:
        """Every run and its status, read without reaping anything."""
        with open_store(str(self.state)) as store:
            return {r.id: r.status for r in store.list_runs(limit=1000)}


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Env:
    tmp = tmp_path_factory.mktemp("signals")
    repo = tmp / "repo"
    (repo / "playbooks").mkdir(parents=True)
    (repo / "templates.yaml").write_text(TEMPLATES)
    (repo / "playbooks" / "nap.yml").write_text(PLAYBOOK)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "nap")
    env = Env(tmp, tmp / "state.sqlite", tmp / "tmpdir")
    env.tmpdir.mkdir()
    done = env.cli("apply", str(repo), "--yes")
    assert done.returncode == 0, done.stderr
    return env


def _subreaper(on: bool) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(36, int(on), 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _ours(before: set[int]) -> list[int]:
    """Processes below this one that the test started (not those it found there)."""
    return [pid for pid in descendants(os.getpid()) if pid not in before]


def _cmdlines(before: set[int]) -> list[bytes]:
    out = []
    for pid in _ours(before):
        with contextlib.suppress(OSError):
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes())
    return out


def _nothing_left(before: set[int], seconds: float = 30) -> list[bytes]:
    """Wait (bounded) until no process the test started is left; what is left."""
    end = time.monotonic() + seconds
    while _ours(before) and time.monotonic() < end:
        _reap()
        time.sleep(0.05)
    _reap()
    return _cmdlines(before)


@pytest.fixture
def below_me() -> Iterator[set[int]]:
    """This process as a subreaper, and the processes already below it; afterwards nothing
    the test started is left running."""
    before = set(descendants(os.getpid()))
    _subreaper(True)
    try:
        yield before
    finally:
        left = _nothing_left(before)
        for pid in _ours(before):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _nothing_left(before, 5)
        _subreaper(False)
        assert left == [], left


def _sleeping(before: set[int]) -> bool:
    return any(c == b"sleep\x0030\x00" for c in _cmdlines(before))


def _until_sleeping(proc: subprocess.Popen[bytes], before: set[int]) -> None:
    """Wait (at most 60 s) until the playbook of ``proc`` runs its ``sleep``."""
    end = time.monotonic() + 60
    while not _sleeping(before):
        assert time.monotonic() < end and proc.poll() is None, "the playbook never ran"
        time.sleep(0.02)


def _interrupt(
    env: Env, sig: signal.Signals, moment: float | None, before: set[int]
) -> tuple[int, dict[int, str]]:
    """`run nap --wait`, ``sig`` after ``moment`` seconds (None: once the playbook runs);
    the exit status and the runs the command created."""
    runs_before = env.statuses()
    proc = env.start("run", "nap", "--wait")
    try:
        if moment is None:
            _until_sleeping(proc, before)
        else:
            time.sleep(moment)
        proc.send_signal(sig)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    created = {i: s for i, s in env.statuses().items() if i not in runs_before}
    return code, created


CASES = [
    (signal.SIGINT, 0.25),
    (signal.SIGINT, 0.6),
    (signal.SIGINT, 1.2),
    (signal.SIGINT, None),
    (signal.SIGTERM, 0.25),
    (signal.SIGTERM, 0.6),
    (signal.SIGTERM, None),
    (signal.SIGHUP, 0.6),
    (signal.SIGHUP, None),
]


@pytest.mark.parametrize(
    ("sig", "moment"),
    CASES,
    ids=[f"{s.name}-{'running' if m is None else m}" for s, m in CASES],
)
def test_a_signal_at_any_moment_ends_the_run_cancelled_and_leaves_nothing_behind(
    applied: Env, below_me: set[int], sig: signal.Signals, moment: float | None
) -> None:
    code, created = _interrupt(applied, sig, moment, below_me)
    assert _nothing_left(below_me) == []
    assert list(applied.tmpdir.iterdir()) == []  # no checkout, no Ansible work directory
    if not created:  # the signal came before the command had made its run
        assert code in (-sig, 1, 130), code
        assert moment is not None and moment < 1
        return
    assert list(created.values()) == ["cancelled"], created
    assert code == 130
    if moment is None:
        [run_id] = created
        log = applied.cli("logs", str(run_id)).stdout
        assert "cancelled by the user" in log


def test_under_nohup_a_hangup_leaves_the_run_going_and_sigterm_still_cancels_it(
    applied: Env, below_me: set[int]
) -> None:
    """A signal the command was started ignoring stays ignored, as POSIX tools leave it."""
    runs_before = applied.statuses()
    proc = applied.start("run", "nap", "--wait", hup=signal.SIG_IGN)
    try:
        _until_sleeping(proc, below_me)
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert proc.poll() is None  # the hangup was ignored: the run goes on
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    created = {i: st for i, st in applied.statuses().items() if i not in runs_before}
    assert code == 130 and list(created.values()) == ["cancelled"], (code, created)
    assert _nothing_left(below_me) == []


def test_a_killed_run_is_abandoned_by_the_next_command_and_its_checkout_removed(
    applied: Env, below_me: set[int]
) -> None:
    code, created = _interrupt(applied, signal.SIGKILL, None, below_me)
    assert code == -signal.SIGKILL
    [(run_id, status)] = created.items()
    assert status == "running"  # nobody could record anything
    assert _nothing_left(below_me) == []  # its worker saw its parent die and cancelled ansible
    shown = applied.cli("runs", "show", str(run_id), "--format", "json")
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["status"] == "abandoned" and "ended" in run["message"], run
    assert list(applied.tmpdir.iterdir()) == []  # the reaper removed the checkout


def test_a_run_over_its_timeout_is_timed_out_and_leaves_nothing_behind(
    applied: Env, below_me: set[int]
) -> None:
    before = applied.statuses()
    done = applied.cli("run", "brief", "--wait")
    assert done.returncode == 124, done.stdout + done.stderr
    created = {i: s for i, s in applied.statuses().items() if i not in before}
    assert list(created.values()) == ["timed-out"]
    assert _nothing_left(below_me) == []
    assert list(applied.tmpdir.iterdir()) == []


def test_a_long_run_keeps_its_lease_while_others_reap(applied: Env) -> None:
    """The lease is renewed while the run goes on, so reaping (by every command that opens
    the state) never abandons a live run, however long it takes."""
    # the run lasts several leases (a lease short enough to see renewals, long enough that a
    # loaded machine's scheduling delays cannot expire it)
    lease = 1.5
    executor = FakeExecutor(default=Script(RunOutcome("", "succeeded", "ok"), delay=5.0))
    with open_state(str(applied.state)) as store, open_state(str(applied.state)) as other:
        record, _ = eng.prepare_run(store, "nap", Targets(), {}, False, "cli", datetime.now(UTC))
        reaped: list[int] = []

        def clock() -> datetime:
            reaped.extend(eng.reap_runs(other, datetime.now(UTC)))  # another command, meanwhile
            return datetime.now(UTC)

        final = eng.execute_run(store, record, executor, {}, {}, clock, lease_seconds=lease)
    assert reaped == []
    assert final.status == "succeeded", final.message
