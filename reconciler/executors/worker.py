"""The worker: one subprocess per ansible-playbook invocation. I/O; the only ansible_runner user.

Forked per phase by the executor's zygote (``python -m reconciler.executors.zygote FD``,
see :mod:`reconciler.executors.zygote`), which calls :func:`main` after ``setsid()``; or run as
``python -m reconciler.executors.worker`` by :mod:`reconciler.executors.ansible`, with
``start_new_session=True``, when there is no zygote. Either way, protocol: a
:class:`~reconciler.executors.spec.WorkerJob` as JSON on stdin (secrets included, so they never
appear in argv or the environment); on stdout one JSON object per line: ``{"type": "event",
...}`` per runner event the parent needs (secret values redacted), then one ``{"type":
"result", ...}`` after every child process is gone and the work directory removed.

What it guarantees (see ``docs/execution.md`` and the measured pitfalls in the research notes):

- a fresh 0700 work directory with a fresh ``private_data_dir`` (runner never overwrites
  ``env/*``), removed at the end;
- ``env/extravars`` written by hand as YAML: trusted (Git) values plain, every string from
  outside Git tagged ``!unsafe`` (keys and nested values too); host vars from outside Git as
  ``{"__ansible_unsafe": ...}`` in the JSON inventory; ``env/settings`` written by hand;
- secrets as YAML through a FIFO passed as ``-e @fifo``: never on disk, in argv or the env;
- ansible-playbook's environment is the job's ``environment`` (chosen by the parent, see
  :mod:`reconciler.executors.environment`), never the one the worker inherited;
- the inventory is built from the given hosts only; no ``limit`` is ever passed;
- SIGTERM (cancel) or the timeout: SIGTERM to the ansible-playbook process group, ``kill_grace``
  seconds, then SIGKILL; the worker is a child subreaper, so afterwards every remaining
  descendant (ansible 2.19 workers call ``setsid()``, ssh ControlPersist masters daemonise) is
  SIGKILLed and reaped.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from reconciler.executors.spec import WorkerJob

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
REDACTED = "********"
_MAX_TEXT = 4000
_RES_KEYS = (
    "changed",
    "failed",
    "skipped",
    "unreachable",
    "msg",
    "diff",
    "skip_reason",
    "rc",
    "censored",
    "item",
    "ansible_loop_var",
    "stdout",
    "stderr",
    "_ansible_no_log",
)
_STATS_KEYS = ("ok", "changed", "failures", "dark", "skipped", "ignored", "rescued", "processed")


# --------------------------------------------------------------------------- data as YAML / JSON
class _Unsafe(str):
    """A string that must reach Ansible tagged ``!unsafe`` (never templated)."""


def _yaml_dump(data: Any) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_unsafe(dumper: yaml.SafeDumper, value: _Unsafe) -> yaml.ScalarNode:
        return dumper.represent_scalar("!unsafe", str(value), style='"')

    Dumper.add_representer(_Unsafe, represent_unsafe)
    return yaml.dump(data, Dumper=Dumper, default_flow_style=False, allow_unicode=True)


def tag_unsafe(value: Any) -> Any:
    """Every string inside ``value`` (dict keys included) as :class:`_Unsafe`."""
    if isinstance(value, str):
        return _Unsafe(value)
    if isinstance(value, Mapping):
        return {tag_unsafe(k): tag_unsafe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [tag_unsafe(v) for v in value]
    return value


def extravars_yaml(trusted: Mapping[str, Any], untrusted: Mapping[str, Any]) -> str:
    """``env/extravars``: trusted values plain, untrusted ones (which win) tagged ``!unsafe``."""
    merged: dict[Any, Any] = {str(k): v for k, v in trusted.items()}
    for key, value in untrusted.items():
        merged.pop(key, None)
        merged[_Unsafe(key)] = tag_unsafe(value)
    return _yaml_dump(merged)


def wrap_unsafe_json(value: Any) -> Any:
    """Untrusted inventory values: every string as ``{"__ansible_unsafe": s}``.

    JSON inventory keys cannot be marked, so the caller rejects untrusted keys that look like
    templates (see :func:`reconciler.executors.ansible.validate_request`)."""
    if isinstance(value, str):
        return {"__ansible_unsafe": value}
    if isinstance(value, Mapping):
        return {str(k): wrap_unsafe_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [wrap_unsafe_json(v) for v in value]
    return value


def inventory_json(job: WorkerJob) -> dict[str, Any]:
    """The inventory: exactly the job's hosts, plus their roles/environments as groups."""
    hosts: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    for host in job.hosts:
        hv: dict[str, Any] = dict(host.vars)
        for key, value in host.untrusted_vars.items():
            hv[key] = wrap_unsafe_json(value)
        hosts[host.name] = hv
        for group in host.groups:
            groups.setdefault(group, {"hosts": {}})["hosts"][host.name] = {}
    return {"all": {"hosts": hosts, "children": groups}}


# --------------------------------------------------------------------------- redaction
class Redactor:
    """Replaces known secret values in every string of a structure (keys included)."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        values = {v for v in secrets.values() if isinstance(v, str) and v}
        self._values = sorted(values, key=len, reverse=True)

    def text(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def __call__(self, value: Any) -> Any:
        if not self._values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value


# --------------------------------------------------------------------------- processes
def _prctl(option: int, arg: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)


def _ppid_map() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2 :].split()
        out[int(entry)] = int(rest[1])
    return out


def descendants(root: int) -> list[int]:
    """Live (or zombie) descendants of ``root``, parents before children."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _ppid_map().items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def reap() -> bool:
    """Reap every dead child; True when no child at all is left (live or dead)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def sweep(deadline: float = 5.0) -> None:
    """SIGKILL every descendant (orphans are ours: we are a subreaper) and reap them.

    A subreaper without any child has no descendant either (an orphan anywhere below it is
    re-parented to it), so the usual case, nothing left, costs one ``waitpid`` and no scan of
    ``/proc``."""
    me = os.getpid()
    end = time.monotonic() + deadline
    while not reap():
        if time.monotonic() > end:
            return
        for pid in descendants(me):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _speed_up_pty_close() -> None:
    """ptyprocess sleeps a fixed 0.1 s in ``close()`` before checking the child; runner calls it
    after EOF, so every run paid 0.1 s of wall time. Wait for the exit instead (up to 0.1 s):
    on a pidfd, which wakes the moment the child exits, with no polling."""
    import ptyprocess  # type: ignore[import-untyped]

    if getattr(ptyprocess.PtyProcess.close, "_reconciler_fast", False):
        return  # already done (in the zygote this worker was forked from)
    original = ptyprocess.PtyProcess.close

    def close(self: Any, force: bool = True) -> None:
        if self.closed:
            return
        if not self.terminated:  # not reaped yet, so the pid is still the child's
            try:
                pidfd = os.pidfd_open(self.pid)
            except OSError:  # no pidfd support: poll briefly
                end = time.monotonic() + 0.1
                while time.monotonic() < end and self.isalive():
                    time.sleep(0.002)
            else:
                try:
                    select.select([pidfd], [], [], 0.1)
                finally:
                    os.close(pidfd)
        self.delayafterclose = 0
        original(self, force)

    close._reconciler_fast = True  # type: ignore[attr-defined]
    ptyprocess.PtyProcess.close = close


# --------------------------------------------------------------------------- the run
class _Stopper:
    """Cancel and timeout: SIGTERM the ansible-playbook group, then let runner SIGKILL it."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.reason: str | None = None
        self.ap_pid: int | None = None
        self.kill_now = threading.Event()

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        targets = [self.ap_pid] if self.ap_pid else []
        me = os.getpid()
        targets += [pid for pid, ppid in _ppid_map().items() if ppid == me]
        signalled = False
        for pid in dict.fromkeys(targets):
            try:
                os.killpg(os.getpgid(pid), signal.SIGTERM)
                signalled = True
            except (ProcessLookupError, PermissionError):
                continue
        if not signalled:
            self.kill_now.set()
            return
        timer = threading.Timer(self.grace, self.kill_now.set)
        timer.daemon = True
        timer.start()


def _feed_fifo(path: str, payload: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return
    try:
        os.write(fd, payload)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unblock_fifo(path: str) -> None:
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))


def _trim(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        return value[:_MAX_TEXT] + "…"
    return value


def slim_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a runner event the parent folds and shows (facts and invocations dropped)."""
    data = event.get("event_data") or {}
    out: dict[str, Any] = {
        "type": "event",
        "event": event.get("event"),
        "counter": event.get("counter"),
        "stdout": event.get("stdout", ""),
    }
    for key in ("host", "task", "task_action", "task_path", "play", "item", "ignore_errors"):
        if data.get(key) is not None:
            out[key] = data[key]
    res = data.get("res")
    if isinstance(res, dict):
        slim = {k: _trim(res[k]) for k in _RES_KEYS if k in res}
        results = res.get("results")
        if isinstance(results, list):
            slim["results"] = [
                {k: _trim(r[k]) for k in _RES_KEYS if k in r} if isinstance(r, dict) else r
                for r in results
            ]
        out["res"] = slim
    if event.get("event") == "playbook_on_stats":
        for key in _STATS_KEYS:
            out[key] = data.get(key) or {}
    return out


def wanted(event: Mapping[str, Any]) -> bool:
    """Whether the parent needs the event: it folds ``runner_*`` results (not
    ``runner_on_start``) and ``playbook_on_stats``, and logs text. Others without text
    (``playbook_on_start``, ``runner_on_start``: a third of a run's events) are not sent."""
    kind = str(event.get("event") or "")
    if event.get("stdout") or kind == "playbook_on_stats":
        return True
    return kind.startswith("runner_") and kind != "runner_on_start"


def run_job(job: WorkerJob, workdir: str, emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run one ansible-playbook through ansible_runner; returns the result message."""
    import ansible_runner

    _speed_up_pty_close()
    started = time.monotonic()
    redact = Redactor(job.secrets)
    stopper = _Stopper(job.kill_grace)
    signal.signal(signal.SIGTERM, lambda *_: stopper.stop("cancelled"))
    signal.signal(signal.SIGINT, lambda *_: stopper.stop("cancelled"))
    timer = threading.Timer(job.timeout, stopper.stop, ("timed-out",))
    timer.daemon = True
    timer.start()

    pdd = os.path.join(workdir, "pdd")
    for sub in ("env", "inventory", "tmp"):
        os.makedirs(os.path.join(pdd, sub), mode=0o700)
    os.symlink(os.path.abspath(job.project_dir), os.path.join(pdd, "project"))
    if len(workdir) <= 60:
        cp_dir = os.path.join(workdir, "cp")
        os.mkdir(cp_dir, 0o700)
    else:  # unix socket paths are limited to 108 bytes
        cp_dir = tempfile.mkdtemp(prefix="rcx-cp-", dir="/tmp")
    with open(os.path.join(pdd, "env", "extravars"), "w", encoding="utf-8") as fh:
        fh.write(extravars_yaml(job.trusted_vars, job.untrusted_vars))
    with open(os.path.join(pdd, "env", "settings"), "w", encoding="utf-8") as fh:
        json.dump({"suppress_output_file": True, "pexpect_timeout": 1}, fh)
    inventory = os.path.join(pdd, "inventory", "hosts.json")
    with open(inventory, "w", encoding="utf-8") as fh:
        json.dump(inventory_json(job), fh)

    cmdline = []
    if job.check:
        cmdline.append("--check")
    if job.diff:
        cmdline.append("--diff")
    fifo = os.path.join(workdir, "secrets.fifo")
    if job.secrets:
        os.mkfifo(fifo, 0o600)
        payload = _yaml_dump(tag_unsafe(dict(job.secrets))).encode()
        threading.Thread(target=_feed_fifo, args=(fifo, payload), daemon=True).start()
        cmdline += ["-e", "@" + fifo]

    stats: dict[str, Any] = {}

    def on_event(event: dict[str, Any]) -> bool:
        pid = event.get("pid")
        if stopper.ap_pid is None and isinstance(pid, int):
            stopper.ap_pid = pid
        if not wanted(event):
            return False
        slim = slim_event(event)
        if slim["event"] == "playbook_on_stats":
            stats.update({k: slim[k] for k in _STATS_KEYS})
        emit(redact(slim))
        return False  # nothing under artifacts/job_events

    # TMPDIR of ansible-playbook and of the modules it runs here: a module killed by a cancel or
    # a timeout leaves its payload directory (ansible_*_payload_*) behind, so it goes in a
    # directory of this run, removed at the end. Sticky and world-writable like /tmp (outside
    # the 0700 work directory), for modules that become another user.
    mod_tmp = tempfile.mkdtemp(prefix="rcx-tmp-", dir=job.workdir_root)
    os.chmod(mod_tmp, 0o1777)
    envvars = {
        "PATH": job.venv_bin + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": cp_dir,
        "ANSIBLE_LOCAL_TEMP": os.path.join(pdd, "tmp"),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "TMPDIR": mod_tmp,
    }
    try:
        runner = ansible_runner.run(
            private_data_dir=pdd,
            playbook=job.playbook,
            inventory=inventory,
            forks=job.forks,
            cmdline=" ".join(shlex.quote(c) for c in cmdline) or None,
            suppress_env_files=True,
            quiet=True,
            ident="run",
            envvars=envvars,
            event_handler=on_event,
            cancel_callback=stopper.kill_now.is_set,
            # Ansible's default in-memory fact cache: runner's jsonfile cache would write every
            # host's facts into the work directory (removed at the end anyway) for nothing.
            fact_cache_type="memory",
        )
        status, rc = str(runner.status), runner.rc
    finally:
        timer.cancel()
        # a second SIGTERM (the parent's death signal arriving now, a cancel repeated) must not
        # cut the clean-up short: the directories below would stay behind
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if job.secrets:
            _unblock_fifo(fifo)
        sweep()
        if not cp_dir.startswith(workdir):
            shutil.rmtree(cp_dir, ignore_errors=True)
        shutil.rmtree(mod_tmp, ignore_errors=True)
    if stopper.reason is not None:
        status = stopper.reason
    return {
        "type": "result",
        "status": status,
        "rc": rc,
        "stats": redact(stats),
        "seconds": round(time.monotonic() - started, 3),
        "workdir": workdir,
    }


def main(stdin: IO[str] | None = None) -> int:
    """Entry point: read the job, run it, emit events and the result, clean up."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    _prctl(PR_SET_CHILD_SUBREAPER, 1)

    def _stop_early(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # before the run starts: unwind, removing what we made

    signal.signal(signal.SIGTERM, _stop_early)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    lock = threading.Lock()

    def emit(message: dict[str, Any]) -> None:
        line = json.dumps(message, default=str)
        with lock:
            protocol.write(line + "\n")

    job = WorkerJob.from_json((stdin or sys.stdin).read())
    # what ansible-playbook inherits (runner copies os.environ): the parent's choice, never
    # the environment this worker was started (or its zygote was started) with
    os.environ.clear()
    os.environ.update(job.environment)
    redact = Redactor(job.secrets)
    workdir = tempfile.mkdtemp(prefix="rcx-", dir=job.workdir_root)
    try:
        result = run_job(job, workdir, emit)
    except Exception as exc:  # reported as a result line, the parent decides the status
        sweep()
        result = {"type": "result", "status": "error", "rc": None, "stats": {}, "seconds": 0.0}
        result["message"] = redact(f"{type(exc).__name__}: {exc}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # nothing may cut the clean-up short
        if not job.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu"] = {  # seconds: the worker itself, and ansible-playbook with all it ran
        "worker": round(me.ru_utime + me.ru_stime, 4),
        "children": round(kids.ru_utime + kids.ru_stime, 4),
    }
    emit(result)
    protocol.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
