"""Runs: from a request (CLI now, API and schedules later) to a recorded outcome.

``prepare_run`` checks a request against the *applied* state (template, variables, targets)
and queues it in the store; ``execute_run`` claims a queued run, checks out the revision it
belongs to, resolves targets and secrets, runs it through an executor and records per-host
results, drift, the log and the final status. Secrets are resolved here, at run time, and go
only to the executor: never to the store, the log or the process list.

Once a run is claimed it always ends in a final status: a signal (:func:`cancel_on_signals`)
cancels it at its next step, an error fails it, its lease is renewed while it runs, and its
checkout is removed. A run whose process died (SIGKILL) is found by :func:`reap_runs`, which
every command calls when it opens the state: it becomes ``abandoned`` and its checkout goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.errors import ExecutionError, SourceError, StateError, UsageError
from reconciler.executors.spec import (
    Executor,
    HostResult,
    Progress,
    RunHandle,
    RunOutcome,
    RunRequest,
    hosts_for_targets,
)
from reconciler.model.common import SecretRef, Targets
from reconciler.model.diagnostics import did_you_mean
from reconciler.model.documents import JobTemplate, Schedule
from reconciler.model.variables import ResolvedVariables, coerce_text, resolve
from reconciler.planning.plan import SERVERS_KIND, SERVERS_NAME, ResolvedInventory
from reconciler.stores.base import DriftRecord, NewRun, RunId, RunRecord, StateStore
from reconciler.stores.base import DriftState as StoreDrift
from reconciler.stores.base import HostResult as StoredHost

LEASE_SECONDS = 120.0


def applied_template(store: StateStore, name: str) -> JobTemplate:
    rec = store.get_object("JobTemplate", name)
    if rec is None:
        known = [r.name for r in store.list_objects("JobTemplate")]
        hint = did_you_mean(name, known)
        raise UsageError(
            f'no template "{name}" in the applied state'
            + (f"; {hint}" if hint else f" (templates: {', '.join(known) or 'none applied'})")
        )
    from reconciler.planning.plan import stored_document

    return stored_document(JobTemplate, "JobTemplate", name, rec.body)


def applied_inventory(store: StateStore) -> ResolvedInventory:
    rec = store.get_object(SERVERS_KIND, SERVERS_NAME)
    return ResolvedInventory.from_body(rec.body) if rec else ResolvedInventory({}, {}, {})


def parse_vars(template: JobTemplate, pairs: Sequence[str]) -> dict[str, Any]:
    """``k=v`` pairs from the command line, converted to each prompt's type."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise UsageError(f"--var {pair!r}: write it as NAME=VALUE")
        out[key] = coerce_text(template.spec.prompt(key), value)
    return out


def check_targets(inv: ResolvedInventory, targets: Targets) -> None:
    for kind, names, known in (
        ("server", targets.servers, inv.servers),
        ("role", targets.roles, inv.roles),
        ("environment", targets.environments, inv.environments),
    ):
        for n in names:
            if n not in known:
                hint = did_you_mean(n, known)
                raise UsageError(f'unknown {kind} "{n}"' + (f"; {hint}" if hint else ""))


def prepare_run(
    store: StateStore,
    template_name: str,
    targets: Targets,
    caller_values: Mapping[str, Any],
    simulate: bool,
    trigger: str,
    now: datetime,
    requested_by: str | None = None,
    schedule: Schedule | None = None,
    slot: datetime | None = None,
) -> tuple[RunRecord, ResolvedVariables]:
    """Validate a request against the applied state and queue it; raises UsageError."""
    template = applied_template(store, template_name)
    if not template.spec.enabled:
        raise UsageError(f'template "{template_name}" is disabled (enabled: false in Git)')
    resolved = resolve(template.spec, schedule.spec.variables if schedule else None, caller_values)
    if resolved.problems:
        raise UsageError("; ".join(p.message for p in resolved.problems))
    inv = applied_inventory(store)
    check_targets(inv, targets)
    effective = targets if not targets.empty else template.spec.targets
    if not effective.empty and not hosts_for_targets(effective, list(inv.servers.values())):
        raise UsageError(
            "the targets match no server (roles and environments together "
            "select servers that are in both)"
        )
    info = store.info()
    sensitive = frozenset(resolved.secret_values)
    run = store.create_run(
        NewRun(
            template=template_name,
            trigger=trigger,  # type: ignore[arg-type]
            commit=info.revision,
            schedule=schedule.name if schedule else None,
            slot=slot,
            variables={**resolved.public(), **dict.fromkeys(sensitive, "")},
            sensitive=sensitive,
            targets=effective.model_dump(),
            simulate=simulate,
            requested_by=requested_by,
        ),
        now,
    )
    if run is None:
        raise ExecutionError("the slot of this run was already taken")
    return run, resolved


def resolve_secret(ref: SecretRef) -> str:
    """Read a ``valueFrom`` secret at run time."""
    src = ref.value_from
    if src.env is not None:
        value = os.environ.get(src.env)
        if value is None:
            raise ExecutionError(f"secret from environment variable {src.env} is not set")
        return value
    assert src.file is not None
    try:
        return Path(src.file).read_text(encoding="utf-8").rstrip("\n")
    except OSError as e:
        raise ExecutionError(f"cannot read secret file {src.file}: {e.strerror}") from None


_SECRET_SOURCES = ("valueFrom", "secretFrom", "userFrom", "passwordFrom")


def _env_references(value: Any, into: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _SECRET_SOURCES and isinstance(item, dict):
                env = item.get("env")
                if isinstance(env, str):
                    into.add(env)
            _env_references(item, into)
    elif isinstance(value, list):
        for item in value:
            _env_references(item, into)


def secret_env_names(store: StateStore) -> frozenset[str]:
    """Every environment variable that a ``valueFrom``, ``secretFrom``, ``userFrom`` or
    ``passwordFrom`` of the applied state names: no process of any run may receive one, so
    one schedule's secret never reaches another's playbook either."""
    names: set[str] = set()
    for rec in store.list_objects():
        with contextlib.suppress(ValueError):
            _env_references(json.loads(rec.body), names)
    return frozenset(names)


def checkout(location: str, revision: str | None, into: Path) -> Path:
    """Write the files of ``revision`` (or the directory itself) into ``into``."""
    from reconciler.sources import git

    if revision is None:
        if git.is_url(location):
            raise ExecutionError("the applied state has no revision to run")
        shutil.copytree(
            location,
            into,
            symlinks=True,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".git", ".reconciler"),
        )
        return into
    src = git.GitSource(location)
    snap = src.snapshot(revision)
    for path, entry in snap.entries.items():
        target = into / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.link_target is not None:
            os.symlink(entry.link_target, target)
            continue
        target.write_bytes(snap.read(path))
        if snap.is_executable(path):
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return into


def _host_record(h: HostResult) -> StoredHost:
    return StoredHost(
        h.name, h.status, h.ok, h.changed, h.failed, h.unreachable, h.skipped, 1 if h.drifted else 0
    )


_DRIFT_STATE: dict[str, StoreDrift] = {
    "in-sync": "in-sync",
    "fixed": "in-sync",
    "found": "drifted",
    "still-present": "drifted",
    "unknown": "unknown",
}


def record_outcome(
    store: StateStore, run: RunRecord, outcome: RunOutcome, now: datetime, worker: str
) -> RunRecord:
    store.set_host_results(run.id, [_host_record(h) for h in outcome.hosts.values()])
    if outcome.drift:
        records = []
        for host, state in outcome.drift.items():
            result = outcome.hosts.get(host)
            details: dict[str, Any] = {"outcome": state}
            if result is not None and result.drift:
                details["tasks"] = [
                    {"task": d.task, "diff": d.diff, "hidden": d.hidden} for d in result.drift
                ]
            records.append(
                DriftRecord(host, run.template, run.id, _DRIFT_STATE[state], details, now)
            )
        store.record_drift(records)
    store.finish_run(run.id, outcome.status, now, outcome.message, worker_id=worker)
    final = store.get_run(run.id)
    assert final is not None
    return final


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def execute_run(
    store: StateStore,
    run: RunRecord,
    executor: Executor,
    secrets: Mapping[str, str],
    caller_untrusted: Mapping[str, Any],
    clock: Callable[[], datetime],
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    lease_seconds: float = LEASE_SECONDS,
) -> RunRecord:
    """Claim ``run`` (queued), execute it and record the outcome. Returns the final record.

    Whatever happens once it is claimed, the run ends in a final status and its checkout is
    removed. ``cancel`` (see :func:`cancel_on_signals`) is looked at between every step: once
    it is set the run stops and is recorded ``cancelled`` (before it is claimed: it never
    starts). While it runs its lease is renewed every quarter of ``lease_seconds``; a run whose
    lease is gone (it was reaped as abandoned) is stopped. Without ``cancel``, a
    KeyboardInterrupt cancels the run the same way.
    """
    from reconciler.engine.planning import applied_source

    stop = cancel if cancel is not None else threading.Event()
    me = worker_id()
    if stop.is_set():
        store.append_log(run.id, _CANCELLED)
        store.finish_run(run.id, "cancelled", clock(), "cancelled before it started")
        final = store.get_run(run.id)
        assert final is not None
        return final
    claimed = store.claim_run(run.id, me, lease_seconds, clock())
    if claimed is None:
        raise ExecutionError(f"run {run.id} is not queued any more")
    tmp: Path | None = None
    handle: RunHandle | None = None
    with _Lease(store, run.id, me, lease_seconds, clock) as lease:
        try:
            template = applied_template(store, run.template)
            inv = applied_inventory(store)
            targets = Targets.model_validate(run.targets or {})
            hosts = hosts_for_targets(
                targets, list(inv.servers.values()), inv.roles, inv.environments
            )
            location = applied_source(store)
            if location is None:
                raise ExecutionError(
                    "the state does not record where the repository is: "
                    "apply it again with this version"
                )
            trusted = {
                k: v
                for k, v in run.variables.items()
                if k not in caller_untrusted and k not in secrets
            }
            # named after the run and this process, so that reaping it (if this process dies)
            # removes it too: see reap_runs
            tmp = Path(tempfile.mkdtemp(prefix=f"reconciler-run-{run.id}-{os.getpid()}-"))
            try:
                project = checkout(location, run.commit, tmp / "project")
            except (SourceError, OSError) as e:
                commit = (run.commit or "working tree")[:12]
                raise ExecutionError(
                    f"cannot check out commit {commit} from {location}, "
                    f"where the state says the applied repository is: {e}"
                ) from None
            request = RunRequest(
                run_id=str(run.id),
                project_dir=str(project),
                playbook=template.spec.playbook,
                kind=template.spec.type,
                mode="simulate" if run.simulate else "run",
                remediate=template.spec.type == "configuration" and not run.simulate,
                hosts=hosts,
                trusted_vars=trusted,
                untrusted_vars=dict(caller_untrusted),
                secrets=dict(secrets),
                forks=template.spec.forks,
                timeout=template.spec.timeout.total_seconds(),
                hidden_env=secret_env_names(store),
            )

            def on_log(text: str) -> None:
                store.append_log(run.id, text)

            if stop.is_set() or lease.lost.is_set():
                store.append_log(run.id, _CANCELLED if stop.is_set() else _LOST)
                outcome = RunOutcome(str(run.id), "cancelled", "cancelled")
            else:
                handle = executor.start(request, on_progress, on_log)
                outcome = _follow(handle, store, run.id, stop, lease)
        except KeyboardInterrupt:  # Ctrl-C where the caller installed no handler
            store.append_log(run.id, _CANCELLED)
            if handle is None:
                outcome = RunOutcome(str(run.id), "cancelled", "cancelled")
            else:
                handle.cancel()
                outcome = handle.wait()
        except Exception as e:
            store.append_log(run.id, f"\nreconciler: the run could not be executed: {e}\n")
            store.finish_run(run.id, "failed", clock(), str(e), worker_id=me)
            raise
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return record_outcome(store, run, outcome, clock(), me)


_CANCELLED = "\nreconciler: cancelled by the user\n"
_LOST = "\nreconciler: this process lost the run's lease (it was reaped); stopping it\n"


class _Lease:
    """Renews the lease of a claimed run from a thread, every quarter of its length, until
    the run is recorded (also during a long checkout, and while a cancelled run winds down);
    ``lost`` is set once the run is not this process's any more (it was reaped)."""

    def __init__(
        self,
        store: StateStore,
        run_id: int,
        me: str,
        seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.lost = threading.Event()
        self._done = threading.Event()
        self._args = (store, run_id, me, seconds, clock)
        self._thread = threading.Thread(target=self._renew, name=f"lease-{run_id}", daemon=True)

    def _renew(self) -> None:
        store, run_id, me, seconds, clock = self._args
        while not self._done.wait(seconds / 4):
            try:
                kept = store.renew_lease(run_id, me, seconds, clock())
            except StateError:
                continue  # the database may be back by the next renewal
            if not kept:
                self.lost.set()
                return

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(10)


def _follow(
    handle: RunHandle, store: StateStore, run_id: int, stop: threading.Event, lease: _Lease
) -> RunOutcome:
    """Wait for the run to end; cancel it once ``stop`` is set or its lease is lost."""
    stopping = False
    while True:
        with contextlib.suppress(TimeoutError):
            return handle.wait(0.2)
        if stopping:
            continue
        if stop.is_set() or lease.lost.is_set():
            store.append_log(run_id, _CANCELLED if stop.is_set() else _LOST)
            handle.cancel()
            stopping = True


@contextlib.contextmanager
def cancel_on_signals() -> Iterator[threading.Event]:
    """While inside, SIGINT, SIGTERM and SIGHUP interrupt nothing: they set the event that is
    yielded, for :func:`execute_run` to cancel the run at its next step. So a signal that
    arrives while the run is being created, claimed or checked out still ends it
    ``cancelled`` (never ``queued`` or ``running`` for ever). Main thread only."""
    event = threading.Event()

    def handler(signum: int, frame: object) -> None:
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def reap_runs(store: StateStore, now: datetime) -> list[RunId]:
    """Abandon the runs whose process is gone (:meth:`StateStore.reap_runs`) and remove the
    checkouts that those of this machine left in the temporary directory. Best effort: a state
    that cannot be written now (read-only, busy) is left as it is."""
    try:
        reaped = store.reap_runs(now)
    except StateError:
        return []
    here = socket.gethostname()
    for run_id in reaped:
        record = store.get_run(run_id)
        host, _, pid = ((record.worker if record else None) or "").rpartition(":")
        if host == here and pid.isdigit():
            for path in Path(tempfile.gettempdir()).glob(f"reconciler-run-{run_id}-{pid}-*"):
                shutil.rmtree(path, ignore_errors=True)
    return reaped


def run_json(r: RunRecord) -> dict[str, Any]:
    """A run as the contract's JSON object (``runs``, ``runs show``, the API)."""

    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    return {
        "id": r.id,
        "schedule": r.schedule,
        "template": r.template,
        "trigger": r.trigger,
        "slot": iso(r.slot),
        "status": r.status,
        "commit": r.commit,
        "started": iso(r.started_at),
        "finished": iso(r.finished_at),
        "created": iso(r.created_at),
        "message": r.message,
        "simulate": r.simulate,
        "variables": dict(r.variables),
        "targets": dict(r.targets),
        "hosts": {
            h.server: {
                "status": h.status,
                "ok": h.ok,
                "changed": h.changed,
                "failed": h.failed,
                "unreachable": h.unreachable,
                "skipped": h.skipped,
                "drifted": h.drifted,
            }
            for h in r.hosts
        },
    }


def dumps_run(r: RunRecord) -> str:
    return json.dumps(run_json(r), indent=2)
