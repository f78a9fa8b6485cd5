"""The worker processes: the pre-forked zygote (holds no secret, one worker per run in its own
session, ends with its executor and with the executor's process) and the leftover check."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reconciler.executors.ansible import AnsibleExecutor
from reconciler.executors.spec import RunRequest
from reconciler.executors.worker import descendants

from .conftest import _set_subreaper, leftovers, local_hosts, write_project, zygote

TRIVIAL = "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: msg=hi\n"
SECRET_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: use the secret
      ansible.builtin.debug:
        msg: "token is {{ api_token }}"
"""
SLEEPY = """
- hosts: all
  gather_facts: false
  tasks:
    - name: nap
      ansible.builtin.command: sleep {{ nap }}
"""


def _memory_has(pid: int, needle: bytes) -> bool:
    """Whether ``needle`` is anywhere in the readable memory of ``pid``."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            if chunk and needle in chunk:
                return True
    return False


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _wait_gone(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while not _gone(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def test_the_zygote_never_holds_a_secret_of_a_run(tmp_path: Path) -> None:
    secret = "zyg0te-S3cret-" + os.urandom(8).hex()
    project = write_project(tmp_path / "p", {"site.yml": SECRET_PLAYBOOK})
    with AnsibleExecutor(workdir_root=str(tmp_path)) as executor:
        handle = executor.start(
            RunRequest(
                run_id="zs",
                project_dir=str(project),
                playbook="site.yml",
                hosts=local_hosts("a"),
                secrets={"api_token": secret},
            )
        )
        outcome = handle.wait(120)
        assert outcome.status == "succeeded", outcome.message
        assert "token is ********" in handle.log_text()  # the secret was really used
        pid = executor.zygote_pid
        assert pid is not None
        assert _memory_has(pid, b"_SHUTDOWN_WAIT")  # control: the scan sees the zygote's memory
        assert not _memory_has(pid, secret.encode())
        for what in ("cmdline", "environ"):
            assert secret.encode() not in Path(f"/proc/{pid}/{what}").read_bytes()
        assert descendants(pid) == []  # the run's worker is gone, the zygote stays


def test_each_run_gets_its_own_worker_forked_in_its_own_session(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", {"site.yml": SLEEPY})
    with AnsibleExecutor(workdir_root=str(tmp_path)) as executor:
        handles = [
            executor.start(
                RunRequest(
                    run_id=f"s{i}",
                    project_dir=str(project),
                    playbook="site.yml",
                    hosts=local_hosts("a"),
                    trusted_vars={"nap": 3},
                )
            )
            for i in range(2)
        ]
        end = time.monotonic() + 30
        workers: list[int] = []
        while time.monotonic() < end and len(workers) < 2:
            pid = executor.zygote_pid
            workers = [p for p in descendants(pid) if _ppid(p) == pid] if pid else []
            time.sleep(0.05)
        assert len(workers) == 2
        for pid in workers:
            assert os.getsid(pid) == pid
            assert Path(f"/proc/{pid}/comm").read_text().strip() == "rcx-worker"
            # forked from the zygote: its command line, their own name
            assert b"reconciler.executors.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes()
        for handle in handles:
            assert handle.wait(60).status == "succeeded"


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def test_the_zygote_ends_with_close_and_with_garbage_collection(tmp_path: Path) -> None:
    executor = AnsibleExecutor(workdir_root=str(tmp_path))
    executor.prestart()
    pid = executor.zygote_pid
    assert pid is not None and not _gone(pid)
    executor.close()
    assert _gone(pid)
    # a closed executor still runs, with workers started afresh
    project = write_project(tmp_path / "p", {"site.yml": TRIVIAL})
    request = RunRequest("after", str(project), "site.yml", hosts=local_hosts("a"))
    assert executor.run(request).status == "succeeded"
    assert executor.zygote_pid is None

    dropped = AnsibleExecutor(workdir_root=str(tmp_path))
    dropped.prestart()
    pid = dropped.zygote_pid
    assert pid is not None
    del dropped
    gc.collect()
    assert _wait_gone(pid, 10)


def test_a_killed_zygote_is_replaced_and_runs_go_on(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", {"site.yml": TRIVIAL})
    request = RunRequest("z", str(project), "site.yml", hosts=local_hosts("a"))
    with AnsibleExecutor(workdir_root=str(tmp_path)) as executor:
        assert executor.run(request).status == "succeeded"
        first = executor.zygote_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert _wait_gone(first, 5)
        assert executor.run(request).status == "succeeded"
        assert executor.zygote_pid not in (None, first)


@pytest.mark.slow
def test_when_the_executor_process_dies_the_zygote_cancels_its_runs_and_exits(
    tmp_path: Path, process_snapshot: set[int]
) -> None:
    project = write_project(tmp_path / "p", {"site.yml": SLEEPY})
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from reconciler.executors.ansible import AnsibleExecutor
        from reconciler.executors.spec import RunRequest, TargetHost
        ex = AnsibleExecutor(workdir_root={str(tmp_path)!r})
        host = TargetHost("a", {{"ansible_connection": "local",
                                 "ansible_python_interpreter": sys.executable}})
        ex.start(RunRequest("orphan", {str(project)!r}, "site.yml", hosts=(host,),
                            trusted_vars={{"nap": 120}}, kill_grace=1))
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        end = time.monotonic() + 60
        while not any("sleep 120" in line for line in leftovers(process_snapshot, wait=0)):
            assert time.monotonic() < end, "the run did not start"
            time.sleep(0.1)
    finally:
        parent.kill()
        parent.wait()
    # The zygote sees EOF, SIGTERMs its worker (which cancels and sweeps its run), exits, and,
    # re-parented to this subreaper, is reaped here.
    end = time.monotonic() + 20
    while True:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        left = leftovers(process_snapshot, wait=0)
        if not left or time.monotonic() > end:
            break
        time.sleep(0.1)
    assert left == []


def _orphan(name: str) -> int:
    """A ``sleep 30`` named ``name`` whose parent (a shell) has already exited."""
    out = subprocess.run(
        ["bash", "-c", f"(exec -a {name} sleep 30) >/dev/null 2>&1 & echo $!"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(out.stdout)
    end = time.monotonic() + 5
    while name.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < end
        time.sleep(0.01)
    return pid


def test_the_leftover_check_sees_our_orphans_and_ignores_other_work(
    process_snapshot: set[int],
) -> None:
    # Another session's work: an orphan re-parented to init, with "ansible" in its command line.
    _set_subreaper(False)
    other = _orphan("ansible-playbook-other")
    _set_subreaper(True)
    ours = _orphan("escaped-orphan")  # orphaned below this process: the shell exits at once
    try:
        assert _ppid(other) != os.getpid() and _ppid(ours) == os.getpid()
        found = leftovers(process_snapshot, wait=0)
        assert len(found) == 1 and f"{ours} " in found[0] and "escaped-orphan" in found[0], found
    finally:
        for pid in (ours, other):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.waitpid(ours, 0)
    assert leftovers(process_snapshot, wait=0) == []


def test_zygote_helper_lists_only_a_live_zygote(tmp_path: Path) -> None:
    executor = AnsibleExecutor(workdir_root=str(tmp_path), prefork=False)
    executor.prestart()
    assert zygote(executor) == set()
