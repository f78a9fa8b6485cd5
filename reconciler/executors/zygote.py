"""The pre-forked worker ("zygote"): one long-lived process per :class:`AnsibleExecutor` that
has ``ansible_runner`` and the worker already imported and forks one worker per run. I/O.

Why: starting ``python -m reconciler.executors.worker`` afresh for every ansible-playbook
invocation cost Python start-up plus importing ``ansible_runner``, about 0.13 s of CPU and
0.1-0.25 s of wall time per run, the largest part of our overhead over bare ansible-playbook.
A ``fork()`` of a process that has already paid it costs about a millisecond.

Protocol. The parent (:class:`Zygote`) starts ``python -m reconciler.executors.zygote
FD`` in a new session, where FD is one end of a ``socketpair``: the *control socket*. For each
run the parent makes three pipes (the worker's stdin, stdout, stderr) and a socketpair (the
*reply socket*) and passes the worker's ends to the zygote with ``SCM_RIGHTS``. The zygote
forks; the child closes every other descriptor, puts the pipes on 0/1/2, calls ``setsid()``
and runs :func:`reconciler.executors.worker.main` exactly as a freshly started worker would
(child subreaper, SIGTERM on the zygote's death). So it is still one worker process, in its own
session, per run. The zygote answers on the reply socket with ``pid N`` and a *pidfd* for the
child (race-free signalling even after the pid is reaped), and, once it has reaped the child,
``exit CODE CPU`` (CPU seconds from ``wait4``: the worker and everything it reaped); then it
closes the reply socket.

What the zygote never does: read a job. The job (secrets included) goes from the parent straight
into the child's stdin pipe; the zygote only ever holds descriptors, so no secret of any run is
ever in its memory (tested by scanning its memory after a run with a secret).

Its life: it exits when the control socket reaches EOF, i.e. when the executor is closed,
garbage-collected, or its process dies (whatever the thread that started it). Before exiting
it SIGTERMs its running workers (they cancel their runs and sweep their trees), waits for them
and SIGKILLs what is left. It is a child subreaper too: processes orphaned by a worker that was
SIGKILLed re-parent to it, and it SIGKILLs and reaps any child that is not one of its workers.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import gc
import importlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from typing import IO

PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
_SHUTDOWN_WAIT = 30.0  # seconds the zygote waits for cancelled workers before SIGKILL
_SPAWN_TIMEOUT = 60.0  # the first spawn waits for the zygote's imports
_PRELOAD = (
    "ansible_runner",
    "ansible_runner.interface",
    "ansible_runner.runner",
    "pexpect",
    "ptyprocess",
    "yaml",
)


class ZygoteError(Exception):
    """The zygote could not be started or did not answer."""


def _set_name(name: bytes) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)


def _recv_fds(sock: socket.socket, maxfds: int, flags: int = 0) -> tuple[bytes, list[int]]:
    """One message and the descriptors passed with it (close-on-exec). Unlike
    ``socket.recv_fds`` (3.11), this passes ``flags`` on, so MSG_DONTWAIT works."""
    fds = array.array("i")
    msg, ancdata, _, _ = sock.recvmsg(
        64, socket.CMSG_LEN(maxfds * fds.itemsize), flags | socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds)


def _children_of(pid: int) -> list[int]:
    from reconciler.executors.worker import _ppid_map

    return [child for child, ppid in _ppid_map().items() if ppid == pid]


# --------------------------------------------------------------------------- zygote side
def _preload() -> None:
    """Everything a worker imports, so each forked worker starts warm."""
    for name in _PRELOAD:
        importlib.import_module(name)
    from reconciler.executors import worker

    worker._speed_up_pty_close()
    gc.collect()
    gc.freeze()  # the collector of a forked worker leaves these pages shared (no copy-on-write)


def _child(fds: list[int]) -> None:
    """In the forked child: become a fresh worker on the given stdin/stdout/stderr; never return."""
    code = 70
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.closerange(3, 1 << 20)  # the control socket, other runs' pipes and reply sockets
        _set_name(b"rcx-worker")
        from reconciler.executors import worker

        stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        code = worker.main(stdin)
    except BaseException:  # report anything, then exit without unwinding
        with contextlib.suppress(Exception):
            traceback.print_exc()
            sys.stderr.flush()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(ctrl_fd: int) -> int:
    """The zygote's main loop (``python -m reconciler.executors.zygote FD``)."""
    _set_name(b"rcx-zygote")
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    ctrl = socket.socket(fileno=ctrl_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    stopping: list[bool] = []
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))  # same as EOF
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    _preload()
    me = os.getpid()
    workers: dict[int, socket.socket] = {}

    def reap() -> bool:
        """Reap every dead child; report workers' exit codes. True when a worker ended in an
        unusual way (a signal, an error), so that it may have left orphans behind."""
        unusual = False
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return unusual
            if pid == 0:
                return unusual
            reply = workers.pop(pid, None)
            if reply is not None:
                code = os.waitstatus_to_exitcode(status)
                unusual = unusual or code != 0
                cpu = usage.ru_utime + usage.ru_stime  # the worker and all it reaped
                with contextlib.suppress(OSError):
                    reply.sendall(b"exit %d %.6f" % (code, cpu))
                reply.close()

    def kill_strays() -> None:
        """Children that are not workers were orphaned by a worker that died without sweeping
        (SIGKILLed, or crashed): a worker that ends normally has swept its tree (exit 0)."""
        for pid in _children_of(me):
            if pid not in workers:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def spawn(fds: list[int]) -> None:
        reply = socket.socket(fileno=fds[3])
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(fds)
        for fd in fds[:3]:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        try:
            socket.send_fds(reply, [b"pid %d" % pid], [pidfd])
        except OSError:  # the parent gave up: this run is not wanted
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        finally:
            os.close(pidfd)
        workers[pid] = reply

    while not stopping:
        select.select([ctrl.fileno(), wake_r], [], [])
        with contextlib.suppress(BlockingIOError):
            while os.read(wake_r, 512):
                pass
        if stopping:
            break
        if reap():
            kill_strays()
            reap()
        try:
            msg, fds = _recv_fds(ctrl, 4, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            msg, fds = b"", []
        if not msg:
            break
        if msg == b"spawn" and len(fds) == 4:
            spawn(fds)
        else:
            for fd in fds:
                os.close(fd)

    # EOF (the executor is closed or its process is gone) or SIGTERM: cancel running workers.
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + _SHUTDOWN_WAIT
    while workers and time.monotonic() < end:
        reap()
        time.sleep(0.05)
    from reconciler.executors.worker import sweep

    sweep()  # SIGKILL and reap whatever is left below us
    reap()
    return 0


# --------------------------------------------------------------------------- parent side
class ForkedWorker:
    """A worker forked by the zygote, with the parts of :class:`subprocess.Popen` the executor
    uses: ``pid``, ``stdin``/``stdout``/``stderr`` (text), ``poll()``, ``wait()`` and
    ``send_signal()``. Signals go through a pidfd, so they can never hit a recycled pid."""

    def __init__(
        self, pid: int, pidfd: int, reply: socket.socket, stdin: int, stdout: int, stderr: int
    ) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self._reply = reply
        self.returncode: int | None = None
        #: CPU seconds of the worker's whole life and of every process it reaped (ansible-playbook
        #: and all it ran), from the zygote's wait4(); known once it has exited
        self.cpu: float | None = None
        self._lock = threading.Lock()
        self.stdin: IO[str] = open(stdin, "w", encoding="utf-8")  # noqa: SIM115
        self.stdout: IO[str] = open(stdout, encoding="utf-8", errors="replace")  # noqa: SIM115
        self.stderr: IO[str] = open(stderr, encoding="utf-8", errors="replace")  # noqa: SIM115

    def _exited(self) -> bool:
        return bool(select.select([self._pidfd], [], [], 0)[0])

    def _read_exit(self) -> int:
        data = b""
        with contextlib.suppress(OSError):
            while chunk := self._reply.recv(64):
                data += chunk
        fields = data.split()
        if len(fields) == 3 and fields[0] == b"exit":
            self.cpu = float(fields[2])
            return int(fields[1])
        return -1  # the zygote went away before it could tell

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None and self._exited():
                self._finish()
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit; only the thread that owns the worker calls this (once at the
        end), and it alone closes the pidfd, so a concurrent ``poll()`` never sees it closed."""
        with self._lock:
            done = self.returncode is not None
        if not done and not select.select([self._pidfd], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired("reconciler.executors.worker", timeout or 0.0)
        with self._lock:
            if self.returncode is None:
                self._finish()
            if self._pidfd >= 0:
                os.close(self._pidfd)
                self._pidfd = -1
            assert self.returncode is not None
            return self.returncode

    def _finish(self) -> None:
        self.returncode = self._read_exit()
        self._reply.close()

    def send_signal(self, sig: int) -> None:
        with self._lock:
            if self.returncode is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, sig)


class Zygote:
    """The parent's handle on one zygote process; :meth:`spawn` forks a worker from it."""

    def __init__(self, python: str, env: Mapping[str, str]) -> None:
        self.env = dict(env)  # what it was started with (it holds no hidden variable)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [python, "-m", "reconciler.executors.zygote", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                env=dict(env),
            )
        except OSError as exc:
            ours.close()
            raise ZygoteError(f"cannot start the worker zygote: {exc}") from exc
        finally:
            theirs.close()
        self._ctrl = ours
        self._lock = threading.Lock()
        self.closed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return not self.closed and self.proc.poll() is None

    def spawn(self) -> ForkedWorker:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        reply, reply_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock:
                if self.closed:
                    raise ZygoteError("the worker zygote is closed")
                socket.send_fds(self._ctrl, [b"spawn"], [in_r, out_w, err_w, reply_theirs.fileno()])
            reply.settimeout(_SPAWN_TIMEOUT)
            msg, fds = _recv_fds(reply, 1)
            reply.settimeout(None)
        except OSError as exc:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            reply.close()
            raise ZygoteError(f"the worker zygote did not answer: {exc}") from exc
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            reply_theirs.close()
        if not msg.startswith(b"pid ") or len(fds) != 1:
            for fd in (*fds, in_w, out_r, err_r):
                os.close(fd)
            reply.close()
            raise ZygoteError("the worker zygote did not answer")
        return ForkedWorker(int(msg.split()[1]), fds[0], reply, in_w, out_r, err_r)

    def close(self, wait: float | None = None) -> None:
        """EOF on the control socket: the zygote cancels running workers and exits."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._ctrl.close()
        if wait is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
