"""The Ansible executor: runs a :class:`RunRequest` as real ansible-playbook invocations. I/O.

Parent side only: it never imports ansible_runner. Every ansible-playbook invocation (a
*phase*) runs in its own worker process, in its own session, that receives the job on stdin
and streams events back as JSON lines: forked from the executor's zygote
(:mod:`reconciler.executors.zygote`, ``ansible_runner`` already imported), or started afresh as
``python -m reconciler.executors.worker`` when there is no usable zygote. Phases:

- orchestration, mode ``run``: one ``run`` phase;
- configuration, mode ``run``: ``check`` (``--check --diff``) on every host; when ``remediate``
  and some hosts drifted, ``remediate`` (apply, ``--diff``) against an inventory of ONLY the
  drifted hosts; when ``recheck``, a ``recheck`` (check) of just the remediated hosts;
- mode ``simulate`` (any kind): the playbook is inspected statically first and refused when it
  has ``check_mode: false`` tasks (they would run for real) unless
  ``allow_real_tasks_in_simulation``; then one ``simulate`` phase in check+diff mode.

The run's ``timeout`` covers all phases. The worker enforces it (SIGTERM to the ansible-playbook
process group, grace, SIGKILL, sweep) and the parent enforces it as well: one second after the
deadline it SIGTERMs the worker, and after ``kill_grace`` more it SIGKILLs the worker's
descendants and process group. ``cancel()`` takes the same path.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import reconciler
from reconciler.errors import ExecutionError
from reconciler.executors import playbooks
from reconciler.executors.environment import bootstrap_environment, exposes, run_environment
from reconciler.executors.folding import (
    PhaseResult,
    drift_summary,
    fold_events,
    merge_host,
)
from reconciler.executors.spec import (
    HostOutcome,
    HostStatus,
    LogCallback,
    OutcomeStatus,
    Phase,
    Progress,
    ProgressCallback,
    RunOutcome,
    RunRequest,
    SimulationFinding,
    TargetHost,
    WorkerJob,
)
from reconciler.executors.worker import Redactor, descendants
from reconciler.executors.zygote import ForkedWorker, Zygote, ZygoteError

_Worker = subprocess.Popen[str] | ForkedWorker

_TASK_EVENTS: Mapping[str, HostStatus] = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}
_VAR_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _is_var_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and not name[0].isdigit()
        and all(c in _VAR_NAME_OK for c in name)
    )


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value or "{#" in value
    if isinstance(value, Mapping):
        return any(_has_template(k) or _has_template(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_template(v) for v in value)
    return False


def validate_request(request: RunRequest) -> str | None:
    """A clear one-line problem with the request, or None. Nothing is run when it has one."""
    root = os.path.realpath(request.project_dir)
    if not os.path.isdir(root):
        return f"project directory {request.project_dir} does not exist"
    path = os.path.realpath(os.path.join(root, request.playbook))
    if not path.startswith(root + os.sep):
        return f"playbook {request.playbook!r} is outside the project directory"
    if not os.path.isfile(path):
        return f"playbook {request.playbook!r} not found in {request.project_dir}"
    leak = playbooks.escape(root, request.playbook)
    if leak is not None:  # checked again here: a plain directory may have changed since apply
        return f"{leak}; nothing was run"
    for source in (request.trusted_vars, request.untrusted_vars, request.secrets):
        bad = [k for k in source if not _is_var_name(k)]
        if bad:
            return f"invalid variable name {bad[0]!r}: use letters, digits and '_'"
    names = [h.name for h in request.hosts]
    if len(set(names)) != len(names):
        return "a host appears twice in the run's inventory"
    for host in request.hosts:
        for key, value in host.untrusted_vars.items():
            if not _is_var_name(key) or _has_template(_keys_only(value)):
                return f"host {host.name}: untrusted variable {key!r} has a templated key"
    if request.forks < 1:
        return "forks must be at least 1"
    if request.timeout <= 0:
        return "timeout must be greater than zero"
    return None


def _keys_only(value: Any) -> Any:
    if isinstance(value, Mapping):
        return [[k, _keys_only(v)] for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [_keys_only(v) for v in value]
    return None


class _Log:
    """The run's textual log, capped at ``limit`` characters; chunks go to ``on_log``."""

    def __init__(self, limit: int, on_log: LogCallback | None, redact: Redactor) -> None:
        self.limit = limit
        self.on_log = on_log
        self.redact = redact
        self.parts: list[str] = []
        self.size = 0
        self.truncated = False
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        if not text or self.truncated:
            return
        text = self.redact.text(text.replace("\r\n", "\n").replace("\r", "\n"))
        if not text.endswith("\n"):
            text += "\n"
        with self.lock:
            room = self.limit - self.size
            if len(text) > room:
                text = text[: max(room, 0)] + f"\n[log truncated at {self.limit} characters]\n"
                self.truncated = True
            self.parts.append(text)
            self.size += len(text)
        if self.on_log is not None:
            self.on_log(text)

    def text(self) -> str:
        with self.lock:
            return "".join(self.parts)


@dataclass
class _PhaseRun:
    result: PhaseResult
    status: str  # worker status: successful, failed, timed-out, cancelled, error, ...
    rc: int | None
    message: str = ""
    seconds: float = 0.0
    workdir: str | None = None


@dataclass
class AnsibleRunHandle:
    """A run in progress; see :class:`reconciler.executors.spec.RunHandle`."""

    run_id: str
    _executor: AnsibleExecutor
    _request: RunRequest
    _on_progress: ProgressCallback | None
    _log: _Log
    _queue: queue.Queue[Progress | None] = field(default_factory=queue.Queue)
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)
    _proc: _Worker | None = None
    _proc_lock: threading.Lock = field(default_factory=threading.Lock)
    _stop_reason: str | None = None
    _outcome: RunOutcome | None = None
    workdirs: list[str] = field(default_factory=list)
    #: per phase, CPU seconds as the worker measured them, its own (``worker``) and those of
    #: ansible-playbook with everything it ran (``children``); with a forked worker also
    #: ``total``: the worker's whole life and all it reaped, from the zygote's ``wait4()``
    worker_cpu: list[dict[str, float]] = field(default_factory=list)

    # ------------------------------------------------------------------ public
    def events(self) -> Iterator[Progress]:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.put(None)
                return
            yield item

    def cancel(self) -> None:
        self._cancelled.set()
        self._stop("cancelled")

    def wait(self, timeout: float | None = None) -> RunOutcome:
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.run_id} still running after {timeout} s")
        assert self._outcome is not None
        return self._outcome

    def log_text(self) -> str:
        return self._log.text()

    # ------------------------------------------------------------------ stopping
    def _stop(self, reason: str) -> None:
        """SIGTERM the current worker; SIGKILL its whole tree after the grace period."""
        with self._proc_lock:
            if self._stop_reason is None:
                self._stop_reason = reason
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        timer = threading.Timer(self._request.kill_grace + 2.0, self._hard_kill, (proc,))
        timer.daemon = True
        timer.start()

    @staticmethod
    def _hard_kill(proc: _Worker) -> None:
        if proc.poll() is not None:
            return
        for pid in descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    # ------------------------------------------------------------------ running
    def _emit(self, progress: Progress) -> None:
        self._queue.put(progress)
        if self._on_progress is not None:
            self._on_progress(progress)

    def _phase(
        self,
        phase: Phase,
        hosts: Sequence[TargetHost],
        *,
        check: bool,
        diff: bool,
        deadline: float,
    ) -> _PhaseRun:
        req = self._request
        names = [h.name for h in hosts]
        remaining = deadline - time.monotonic()
        if self._cancelled.is_set():
            return _PhaseRun(fold_events([], names, check=check), "cancelled", None)
        if remaining <= 0:
            return _PhaseRun(fold_events([], names, check=check), "timed-out", None)
        self._emit(Progress(self.run_id, phase, "phase", text=f"{len(hosts)} host(s)"))
        self._log.write(f"=== {phase}: {', '.join(names)} ===")
        ex = self._executor
        job = WorkerJob(
            run_id=self.run_id,
            phase=phase,
            project_dir=os.path.realpath(req.project_dir),
            playbook=req.playbook,
            hosts=tuple(hosts),
            trusted_vars=dict(req.trusted_vars),
            untrusted_vars=dict(req.untrusted_vars),
            secrets=dict(req.secrets),
            forks=req.forks,
            timeout=remaining,
            kill_grace=req.kill_grace,
            check=check,
            diff=diff,
            venv_bin=ex.venv_bin,
            environment=run_environment(os.environ, req.hidden_env, req.secrets.values()),
            workdir_root=ex.workdir_root,
            keep_workdir=ex.keep_workdir,
        )
        started = time.monotonic()
        with self._proc_lock:
            if self._stop_reason is not None:
                return _PhaseRun(fold_events([], names, check=check), self._stop_reason, None)
            proc = ex._spawn_worker(req)
            self._proc = proc
        watchdog = threading.Timer(remaining + 1.0, self._stop, ("timed-out",))
        watchdog.daemon = True
        watchdog.start()
        stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        drain = threading.Thread(target=_drain, args=(proc, stderr_tail), daemon=True)
        drain.start()
        events: list[dict[str, Any]] = []
        result: dict[str, Any] = {}
        try:
            assert proc.stdin is not None and proc.stdout is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(job.to_json())
                proc.stdin.close()
            for line in proc.stdout:
                try:
                    msg = _json_loads(line)
                except ValueError:
                    continue
                if msg.get("type") == "event":
                    events.append(msg)
                    self._on_event(phase, msg)
                elif msg.get("type") == "result":
                    result = msg
            proc.wait()
        finally:
            watchdog.cancel()
            drain.join(timeout=5)
            with self._proc_lock:
                self._proc = None
        folded = fold_events(events, names, check=check)
        status = str(result.get("status") or "error")
        message = str(result.get("message") or "")
        if not result:
            tail = self._log.redact.text("\n".join(stderr_tail).strip())
            message = f"the run worker died (exit {proc.returncode})" + (
                f": {tail.splitlines()[-1]}" if tail else ""
            )
        if self._stop_reason is not None:
            status = self._stop_reason
        if result.get("workdir"):
            self.workdirs.append(str(result["workdir"]))
        if isinstance(result.get("cpu"), dict):
            cpu = dict(result["cpu"])
            if isinstance(proc, ForkedWorker) and proc.cpu is not None:
                cpu["total"] = proc.cpu
            self.worker_cpu.append(cpu)
        return _PhaseRun(
            folded,
            status,
            result.get("rc"),
            message,
            time.monotonic() - started,
        )

    def _on_event(self, phase: Phase, event: Mapping[str, Any]) -> None:
        self._log.write(str(event.get("stdout") or ""))
        kind = str(event.get("event"))
        status = _TASK_EVENTS.get(kind)
        if status is None:
            return
        res = event.get("res")
        if status == "ok" and (
            (isinstance(res, Mapping) and res.get("changed"))
            or str(event.get("stdout") or "").startswith("changed:")
        ):
            status = "changed"
        self._emit(
            Progress(
                self.run_id,
                phase,
                kind,
                host=event.get("host"),
                task=event.get("task"),
                status=status,
                text=str(event.get("stdout") or "").replace("\r", ""),
            )
        )

    def _main(self) -> None:
        started = time.monotonic()
        try:
            outcome = self._run(started)
        except Exception as exc:  # a bug or an unstartable worker: still a clear outcome
            outcome = RunOutcome(
                self.run_id, "failed", self._log.redact.text(f"{type(exc).__name__}: {exc}")
            )
        if outcome.seconds == 0.0:
            outcome = _replace(outcome, seconds=round(time.monotonic() - started, 3))
        outcome = _replace(outcome, log_truncated=self._log.truncated)
        self._log.write(f"=== {outcome.status}: {outcome.message} ===")
        self._outcome = outcome
        self._queue.put(None)
        self._done.set()

    def _run(self, started: float) -> RunOutcome:
        req = self._request
        problem = validate_request(req)
        if problem is not None:
            return RunOutcome(self.run_id, "failed", problem)
        deadline = started + req.timeout
        hosts = req.effective_hosts()
        findings: list[SimulationFinding] = []
        if req.mode == "simulate":
            real, unknown = playbooks.real_tasks(req.project_dir, req.playbook)
            if real and not req.allow_real_tasks_in_simulation:
                return RunOutcome(
                    self.run_id,
                    "failed",
                    "simulation refused: these tasks run for real even in check mode: "
                    + playbooks.describe(real)
                    + " (allow them explicitly to simulate anyway)",
                    findings=tuple(
                        SimulationFinding("runs-for-real", t.task, None, f"{t.path}: {t.reason}")
                        for t in real
                    ),
                )
            findings += [
                SimulationFinding("runs-for-real", t.task, None, f"{t.path}: {t.reason}")
                for t in real
            ]
            for where in unknown:
                self._log.write(f"note: could not inspect {where}")
            run = self._phase("simulate", hosts, check=True, diff=True, deadline=deadline)
            findings += run.result.findings
            return self._outcome_of(
                [run],
                run.result.hosts,
                drift_summary(run.result) if req.kind == "configuration" else {},
                findings,
                started,
            )
        if req.kind == "orchestration":
            run = self._phase("run", hosts, check=False, diff=False, deadline=deadline)
            return self._outcome_of([run], run.result.hosts, {}, [], started)
        check = self._phase("check", hosts, check=True, diff=True, deadline=deadline)
        findings += check.result.findings
        runs = [check]
        drifted = [h for h in hosts if check.result.hosts[h.name].drifted]
        remediation: PhaseResult | None = None
        recheck: PhaseResult | None = None
        if req.remediate and drifted and check.status in ("successful", "failed"):
            fix = self._phase("remediate", drifted, check=False, diff=True, deadline=deadline)
            runs.append(fix)
            remediation = fix.result
            fixed = [h for h in drifted if fix.result.hosts[h.name].status in ("ok", "changed")]
            if req.recheck and fixed and fix.status in ("successful", "failed"):
                again = self._phase("recheck", fixed, check=True, diff=True, deadline=deadline)
                runs.append(again)
                recheck = again.result
        merged = {
            name: merge_host(host, remediation.hosts.get(name) if remediation else None)
            for name, host in check.result.hosts.items()
        }
        drift = drift_summary(check.result, remediation, recheck)
        return self._outcome_of(runs, merged, drift, findings, started)

    def _outcome_of(
        self,
        runs: Sequence[_PhaseRun],
        hosts: Mapping[str, HostOutcome],
        drift: Mapping[str, Any],
        findings: Sequence[SimulationFinding],
        started: float,
    ) -> RunOutcome:
        req = self._request
        last = runs[-1]
        status: OutcomeStatus
        stopped = next((r.status for r in runs if r.status in ("cancelled", "timed-out")), None)
        bad = [h for h in hosts.values() if h.status in ("failed", "unreachable")]
        still = [n for n, d in drift.items() if d == "still-present"]
        errored = next((r for r in runs if r.status not in ("successful", "failed")), None)
        if stopped == "cancelled":
            status, message = "cancelled", "cancelled"
        elif stopped == "timed-out":
            status, message = "timed-out", f"timed out after {req.timeout:g} s"
        elif errored is not None:
            status = "failed"
            message = errored.message or errored.result.error or f"worker status {errored.status}"
        elif bad:
            status = "failed"
            message = "; ".join(f"{h.name}: {h.message or h.status}" for h in bad[:5])
            if len(bad) > 5:
                message += f"; and {len(bad) - 5} more host(s)"
        elif any(r.status == "failed" for r in runs):
            status = "failed"
            err = next((r.result.error for r in runs if r.result.error), "")
            message = err or f"ansible-playbook failed (rc {last.rc})"
        elif still:
            status = "failed"
            message = f"drift still present after remediation on {', '.join(still)}"
        else:
            status = "succeeded"
            message = _summary(hosts, drift)
        if stopped is not None and bad:
            message += " (" + "; ".join(f"{h.name}: {h.status}" for h in bad[:5]) + ")"
        return RunOutcome(
            run_id=self.run_id,
            status=status,
            message=message,
            hosts=dict(hosts),
            drift=dict(drift),
            findings=tuple(findings),
            rc=last.rc,
            seconds=round(time.monotonic() - started, 3),
        )


def _summary(hosts: Mapping[str, HostOutcome], drift: Mapping[str, Any]) -> str:
    counts: dict[str, int] = {}
    for h in hosts.values():
        counts[h.status] = counts.get(h.status, 0) + 1
    text = f"{len(hosts)} host(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    if drift:
        dcounts: dict[str, int] = {}
        for d in drift.values():
            dcounts[d] = dcounts.get(d, 0) + 1
        text += "; drift: " + ", ".join(f"{n} {s}" for s, n in sorted(dcounts.items()))
    return text


def _replace(outcome: RunOutcome, **changes: Any) -> RunOutcome:
    from dataclasses import replace

    return replace(outcome, **changes)


def _json_loads(line: str) -> dict[str, Any]:
    import json

    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _drain(proc: _Worker, tail: collections.deque[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        tail.append(line.rstrip("\n"))


def _close_zygotes(zygotes: list[Zygote]) -> None:
    while zygotes:
        zygotes.pop().close()


class AnsibleExecutor:
    """Runs requests with real ansible-playbook; see :class:`reconciler.executors.spec.Executor`.

    ``venv_bin`` is put first on ansible-playbook's PATH (default: the directory of the running
    Python). ``log_limit`` caps the textual log (characters). ``workdir_root`` is where workers
    make their private 0700 directories (default: the system temp dir); ``keep_workdir`` keeps
    them for inspection (debugging and tests only: it defeats the clean-up).

    ``prefork`` (default): workers are forked from a long-lived *zygote* that has
    ``ansible_runner`` already imported (see :mod:`reconciler.executors.zygote`), started on
    the first run (or by :meth:`prestart`) with the bootstrap environment of that moment (see
    :mod:`reconciler.executors.environment`: never this process's whole environment), and ended by
    :meth:`close` (also on garbage collection, at interpreter exit, and when this process
    dies). Without it, or if the zygote cannot be used, each worker is started afresh with
    ``python -m reconciler.executors.worker``. Either way: one worker process per
    ansible-playbook invocation, in its own session.
    """

    def __init__(
        self,
        *,
        venv_bin: str | None = None,
        python: str | None = None,
        log_limit: int = 1_000_000,
        workdir_root: str | None = None,
        keep_workdir: bool = False,
        prefork: bool = True,
    ) -> None:
        self.python = python or sys.executable
        self.venv_bin = venv_bin or os.path.dirname(self.python)
        self.log_limit = log_limit
        self.workdir_root = workdir_root
        self.keep_workdir = keep_workdir
        self.prefork = prefork
        self.package_root = str(Path(reconciler.__file__).resolve().parent.parent)
        self._zygote_lock = threading.Lock()
        self._zygotes: list[Zygote] = []  # the current one last; shared with the finalizer
        self._closed = False
        weakref.finalize(self, _close_zygotes, self._zygotes)

    # ------------------------------------------------------------------ workers
    def _worker_env(self, request: RunRequest | None = None) -> dict[str, str]:
        """What the zygote or a worker started afresh is started with: never the whole
        environment of this process, which may hold the secrets it resolves."""
        hidden = request.hidden_env if request else frozenset()
        secrets = request.secrets.values() if request else ()
        return bootstrap_environment(os.environ, self.package_root, hidden, secrets)

    def _zygote(self, request: RunRequest | None = None) -> Zygote | None:
        with self._zygote_lock:
            if self._closed or not self.prefork:
                return None
            if self._zygotes and self._zygotes[-1].alive():
                current = self._zygotes[-1]
                if request is not None and exposes(
                    current.env, request.hidden_env, request.secrets.values()
                ):
                    return None  # started before this secret was known: a fresh worker
                return current
            _close_zygotes(self._zygotes)
            try:
                zygote = Zygote(self.python, self._worker_env(request))
            except ZygoteError:
                return None
            self._zygotes.append(zygote)
            return zygote

    def prestart(self) -> None:
        """Start the zygote now instead of on the first run (a daemon does this at start-up)."""
        self._zygote()

    @property
    def zygote_pid(self) -> int | None:
        """The pid of the live zygote, if any (for tests, benchmarks and diagnostics)."""
        with self._zygote_lock:
            if self._zygotes and self._zygotes[-1].alive():
                return self._zygotes[-1].pid
            return None

    def _spawn_worker(self, request: RunRequest) -> _Worker:
        zygote = self._zygote(request)
        if zygote is not None:
            try:
                return zygote.spawn()
            except ZygoteError:
                zygote.close()  # a fresh one next time; this run starts a worker afresh
        try:
            return subprocess.Popen(
                [self.python, "-m", "reconciler.executors.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=self._worker_env(request),
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as exc:
            raise ExecutionError(f"cannot start the run worker: {exc}") from exc

    def close(self, wait: float | None = 10.0) -> None:
        """End the zygote (its running workers are cancelled first). Later runs start workers
        afresh. Waits up to ``wait`` seconds for the zygote to exit."""
        with self._zygote_lock:
            self._closed = True
            zygotes = list(self._zygotes)
            self._zygotes.clear()
        for zygote in zygotes:
            zygote.close(wait)

    def __enter__(self) -> AnsibleExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(
        self,
        request: RunRequest,
        on_progress: ProgressCallback | None = None,
        on_log: LogCallback | None = None,
    ) -> AnsibleRunHandle:
        handle = AnsibleRunHandle(
            run_id=request.run_id,
            _executor=self,
            _request=request,
            _on_progress=on_progress,
            _log=_Log(self.log_limit, on_log, Redactor(request.secrets)),
        )
        thread = threading.Thread(target=handle._main, name=f"run-{request.run_id}", daemon=True)
        thread.start()
        return handle

    def run(
        self,
        request: RunRequest,
        on_progress: ProgressCallback | None = None,
        on_log: LogCallback | None = None,
    ) -> RunOutcome:
        """Start and wait."""
        return self.start(request, on_progress, on_log).wait()
