"""Fixtures for the executor tests: real ansible-playbook, real sshd on loopback addresses."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.executors.ansible import AnsibleExecutor
from reconciler.executors.spec import TargetHost
from reconciler.executors.worker import descendants

SSHD = "/usr/sbin/sshd"
LOCAL_VARS: dict[str, Any] = {
    "ansible_connection": "local",
    "ansible_python_interpreter": sys.executable,
}


def local_hosts(*names: str) -> tuple[TargetHost, ...]:
    """Aliases of the controller, each reached over the local connection."""
    return tuple(TargetHost(name=n, vars=dict(LOCAL_VARS)) for n in names)


def write_project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _all_pids() -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit()}


PR_SET_CHILD_SUBREAPER = 36


def _set_subreaper(on: bool) -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def leftovers(before: set[int], keep: Iterable[int] = (), wait: float = 5.0) -> list[str]:
    """Processes this test started that are still there: every process below this one (live or
    zombie) that is new since ``before``, other than the ``keep`` pids (sshd listeners, a live
    executor's zygote). Waits up to ``wait`` seconds for processes already on their way out.

    Scoped to what the test itself started, so other ansible work on the machine cannot make it
    fail, and nothing it started can hide: the ``process_snapshot`` fixture makes this process a
    child subreaper, so a process orphaned anywhere below it (an ansible 2.19 worker after
    ``setsid()``, a daemonised ssh ControlPersist master) is re-parented to it, not to init, and
    stays a descendant."""
    me = os.getpid()
    keep = set(keep)
    end = time.monotonic() + wait
    while True:
        found = []
        for pid in descendants(me):
            if pid in before or pid in keep:
                continue
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            state, ppid = fields[0], int(fields[1])
            if state == "Z":
                found.append(f"{pid} <zombie child of {ppid}>")
            else:
                found.append(f"{pid} (ppid {ppid}) {_cmdline(pid)}")
        if not found or time.monotonic() > end:
            return found
        time.sleep(0.1)


def zygote(executor: AnsibleExecutor) -> set[int]:
    """The executor's live zygote (expected to outlive runs), to pass as ``keep``."""
    pid = executor.zygote_pid
    return {pid} if pid is not None else set()


@pytest.fixture
def process_snapshot() -> Iterator[set[int]]:
    """The processes before the test; this process is a child subreaper during the test (see
    :func:`leftovers`)."""
    _set_subreaper(True)
    try:
        yield _all_pids()
    finally:
        _set_subreaper(False)


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[AnsibleExecutor]:
    root = tmp_path / "w"
    root.mkdir(mode=0o700)
    with AnsibleExecutor(workdir_root=str(root)) as executor:
        yield executor


# ------------------------------------------------------------------------------ sshd fixture
@dataclass
class SshTargets:
    """One throwaway sshd per loopback address, key auth as root."""

    dir: Path
    addresses: list[str]
    port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def hosts(self, n: int | None = None) -> tuple[TargetHost, ...]:
        key = str(self.dir / "client_key")
        return tuple(
            TargetHost(
                name=f"srv{i + 1}",
                vars={
                    "ansible_host": addr,
                    "ansible_port": self.port,
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": key,
                    "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                    "-o UserKnownHostsFile=/dev/null -o ConnectTimeout=5",
                    "ansible_python_interpreter": "/usr/bin/python3",
                },
            )
            for i, addr in enumerate(self.addresses[:n])
        )

    def config(self, addr: str) -> Path:
        tag = addr.rsplit(".", 1)[1]
        cfg = self.dir / f"sshd_{tag}.conf"
        cfg.write_text(
            f"ListenAddress {addr}:{self.port}\n"
            f"HostKey {self.dir}/host_key\n"
            f"PidFile {self.dir}/sshd_{tag}.pid\n"
            f"AuthorizedKeysFile {self.dir}/authorized_keys\n"
            "AllowUsers root\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nLogLevel ERROR\nMaxStartups 50\nMaxSessions 50\n"
        )
        return cfg

    def start(self, addr: str) -> None:
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config(addr))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs[addr] = proc
        end = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((addr, self.port), timeout=1) as sock:
                    if sock.recv(4).startswith(b"SSH-") and proc.poll() is None:
                        return
            except OSError:
                pass
            if time.monotonic() > end or proc.poll() is not None:
                raise RuntimeError(f"sshd on {addr} did not start")
            time.sleep(0.02)

    def stop(self, addr: str) -> None:
        """Kill the listener and its per-connection children (open sessions die too)."""
        proc = self.procs.pop(addr, None)
        if proc is None:
            return
        children = descendants(proc.pid)
        for pid in [*children, proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        for pid in children:  # re-parented to this process when it is a subreaper: reap them
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def restart_all(self) -> None:
        for addr in self.addresses:
            if addr not in self.procs:
                self.start(addr)

    def pids(self) -> set[int]:
        """The listeners and their per-connection children."""
        out: set[int] = set()
        for proc in self.procs.values():
            out.add(proc.pid)
            out.update(descendants(proc.pid))
        return out


def _free_port(addresses: list[str]) -> int:
    """A port no one listens on at any of ``addresses`` (not a fixed one: another test run on
    the same machine may have its own sshd there, and would answer our banner check)."""
    while True:
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for addr in addresses[1:]:
                with socket.socket() as probe:
                    probe.bind((addr, port))
        except OSError:
            continue
        return port


@pytest.fixture(scope="session")
def ssh_targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshTargets]:
    if not os.access(SSHD, os.X_OK):
        pytest.fail("sshd is missing: apt-get install -y openssh-server (CI does this)")
    root = tmp_path_factory.mktemp("sshd")
    root.chmod(0o700)
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True
        )
    shutil.copy(root / "client_key.pub", root / "authorized_keys")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    addresses = [f"127.0.0.{i}" for i in range(2, 6)]
    targets = SshTargets(root, addresses, _free_port(addresses))
    for addr in targets.addresses:
        targets.start(addr)
    yield targets
    for addr in list(targets.procs):
        targets.stop(addr)
    # ControlPersist masters using our client key (workers sweep their own; this is a backstop)
    for pid in _all_pids():
        if str(root) in _cmdline(pid) and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


RunCheck = Callable[[set[int]], None]
