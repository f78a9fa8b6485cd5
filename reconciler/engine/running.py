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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from reconciler.engine.working import LEASE_SECONDS
from reconciler.errors import ExecutionError, StateError, UsageError
from reconciler.executors.spec import (
    Executor,
    HostOutcome,
    Progress,
    hosts_for_targets,
)
from reconciler.model.common import SecretRef, Targets
from reconciler.model.diagnostics import did_you_mean
from reconciler.model.documents import JobTemplate, Schedule
from reconciler.model.variables import ResolvedVariables, coerce_text, resolve
from reconciler.planning.plan import SERVERS_KIND, SERVERS_NAME, ResolvedInventory
from reconciler.stores.base import DriftState, HostResult, NewRun, RunId, RunRecord, StateStore


def applied_template(store: StateStore, name: str) -> JobTemplate:
    rec = store.get_object("JobTemplate", name)
    if rec is None:
        known = [r.name for r in store.list_objects("JobTemplate")]
        hint = did_you_mean(name, known)
        raise UsageError(
            f'no template "{name}" in the applied state'
            + (f"; {hint}" if hint else f" (templates: {', '.join(known) or 'none applied'})")
        )
    template: JobTemplate = _parsed(JobTemplate, "JobTemplate", name, rec.content_hash, rec.body)
    return template


def applied_inventory(store: StateStore) -> ResolvedInventory:
    rec = store.get_object(SERVERS_KIND, SERVERS_NAME)
    if rec is None:
        return ResolvedInventory({}, {}, {})
    key = (SERVERS_KIND, SERVERS_NAME, rec.content_hash)
    got = _PARSED.get(key)
    if not isinstance(got, ResolvedInventory):
        got = _remember(key, ResolvedInventory.from_body(rec.body))
    return got


_PARSED: dict[tuple[str, str, str], Any] = {}
"""Applied objects already parsed, by kind, name and content hash (a content hash names one
content for ever, so an entry is never stale). Values are never modified by their users."""
_PARSED_MAX = 512


def _remember(key: tuple[str, str, str], value: Any) -> Any:
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[key] = value
    return value


def _parsed(model: type[JobTemplate], kind: str, name: str, content_hash: str, body: str) -> Any:
    from reconciler.planning.plan import stored_document

    key = (kind, name, content_hash)
    got = _PARSED.get(key)
    if got is None:
        got = _remember(key, stored_document(model, kind, name, body))
    return got


def parse_vars(template: JobTemplate, pairs: Sequence[str]) -> dict[str, Any]:
    """``k=v`` pairs from the command line, converted to each prompt's type."""
    items: list[tuple[str, str]] = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise UsageError(f"--var {pair!r}: write it as NAME=VALUE")
        items.append((key, value))
    return text_vars(template, items)


def text_vars(template: JobTemplate, items: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Values typed as text (``--var``, the API's query parameters), each converted to its
    prompt's type; a value that does not convert is kept, for :func:`prepare_run` to report.
    A name given twice keeps its last value."""
    return {key: coerce_text(template.spec.prompt(key), value) for key, value in items}


def target_problems(inv: ResolvedInventory, targets: Targets) -> list[str]:
    """One message per server, role or environment that the applied inventory lacks."""
    out: list[str] = []
    for kind, names, known in (
        ("server", targets.servers, inv.servers),
        ("role", targets.roles, inv.roles),
        ("environment", targets.environments, inv.environments),
    ):
        for n in names:
            if n not in known:
                hint = did_you_mean(n, known)
                out.append(f"unknown {kind} {json.dumps(n)}" + (f"; {hint}" if hint else ""))
    return out


def check_targets(inv: ResolvedInventory, targets: Targets) -> None:
    """Raise UsageError naming every unknown server, role and environment at once."""
    problems = target_problems(inv, targets)
    if problems:
        raise UsageError("; ".join(problems))


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
    *,
    not_before: datetime | None = None,
    claim: bool = False,
) -> tuple[RunRecord, ResolvedVariables]:
    """Validate a request against the applied state and queue it; raises UsageError.

    ``claim``: the run is created claimed by this process (it executes it itself, and no
    daemon worker may take it); ``not_before``: a one-off for that instant (``run --at``)."""
    new, resolved = build_run(
        store,
        template_name,
        targets,
        caller_values,
        simulate,
        trigger,
        requested_by,
        schedule,
        slot,
        not_before=not_before,
        claim=claim,
    )
    run = store.create_run(new, now)
    if run is None:
        raise ExecutionError("the slot of this run was already taken")
    return run, resolved


def build_run(
    store: StateStore | None,
    template_name: str,
    targets: Targets,
    caller_values: Mapping[str, Any],
    simulate: bool,
    trigger: str,
    requested_by: str | None = None,
    schedule: Schedule | None = None,
    slot: datetime | None = None,
    *,
    not_before: datetime | None = None,
    claim: bool = False,
    template: JobTemplate | None = None,
    applied: tuple[str | None, ResolvedInventory, str | None] | None = None,
) -> tuple[NewRun, ResolvedVariables]:
    """The run that :func:`prepare_run` queues, checked against the applied state but not
    written (the HTTP API writes it with its idempotency key). Raises UsageError naming every
    problem of the variables and the targets at once. ``template``: the applied template of
    that name, and ``applied``: the applied revision, inventory and signing key, when the
    caller has read them already (then, for a run of no schedule, ``store`` may be None: it
    is not read)."""

    def read() -> StateStore:
        if store is None:
            raise TypeError("build_run reads the state: give a store, or the template and applied")
        return store

    if template is None:
        template = applied_template(read(), template_name)
    if not template.spec.enabled:
        raise UsageError(f'template "{template_name}" is disabled (enabled: false in Git)')
    resolved = resolve(template.spec, schedule.spec.variables if schedule else None, caller_values)
    revision, inv = (
        (applied[0], applied[1]) if applied is not None else (None, applied_inventory(read()))
    )
    problems = [p.message for p in resolved.problems] + target_problems(inv, targets)
    if problems:
        raise UsageError("; ".join(problems))
    effective = targets if not targets.empty else template.spec.targets
    if not effective.empty and not hosts_for_targets(effective, list(inv.servers.values())):
        raise UsageError(
            "the targets match no server (roles and environments together "
            "select servers that are in both)"
        )
    from reconciler.engine.provenance import for_request, stored_provenance

    if applied is None:
        info = read().info()
        revision, signing_key = info.revision, info.signing_key
    else:
        signing_key = applied[2]
    sensitive = frozenset(resolved.secret_values)
    new = NewRun(
        template=template_name,
        trigger=trigger,  # type: ignore[arg-type]
        commit=revision,
        schedule=schedule.name if schedule else None,
        slot=slot,
        variables={**resolved.public(), **dict.fromkeys(sensitive, "")},
        sensitive=sensitive,
        untrusted=frozenset(resolved.untrusted),
        not_before=not_before,
        claim_by=worker_id() if claim else None,
        claim_seconds=LEASE_SECONDS,
        targets=effective.model_dump(),
        simulate=simulate,
        requested_by=requested_by,
        provenance=for_request(read(), signing_key, schedule.name)
        if schedule is not None
        else stored_provenance(signing_key, None, []),
    )
    return new, resolved


CancelOutcome = Literal["cancelled", "requested", "not-found", "final"]
"""What :func:`cancel_run` did: cancelled a queued run, asked the worker of a running one to
cancel it (within a heartbeat), found no such run, or found it final already."""


def cancel_run(
    store: StateStore, run_id: int, now: datetime, by: str
) -> tuple[CancelOutcome, RunRecord | None]:
    """Cancel a queued or running run (``reconciler cancel``, ``POST /api/runs/{id}/cancel``);
    ``by`` says who, for the run's message. Returns what happened and the run as it is now."""
    before = store.get_run(run_id)
    if before is None:
        return "not-found", None
    if before.status not in ("queued", "running"):
        return "final", before
    rec = store.request_cancel(run_id, now, by)
    if rec is None:
        return "not-found", None
    if rec.status == "cancelled":
        return "cancelled", rec
    if rec.status == "running":
        return "requested", rec
    return "final", rec  # it ended on its own meanwhile


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


def _host_record(h: HostOutcome) -> HostResult:
    return HostResult(
        h.name, h.status, h.ok, h.changed, h.failed, h.unreachable, h.skipped, 1 if h.drifted else 0
    )


_DRIFT_STATE: dict[str, DriftState] = {
    "in-sync": "in-sync",
    "fixed": "in-sync",
    "found": "drifted",
    "still-present": "drifted",
    "unknown": "unknown",
}


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
    *,
    from_state: bool = False,
) -> RunRecord:
    """Claim ``run`` (queued) for this process and execute it through the one run lifecycle
    (:func:`reconciler.engine.runs.execute_claimed`, which the daemon's workers use too).
    Returns the final record.

    ``secrets`` and ``caller_untrusted`` are what the submitting process holds in memory.
    ``cancel`` (see :func:`cancel_on_signals`) is looked at between every step: once it is set
    the run stops and is recorded ``cancelled`` (before it is claimed: it never starts).
    ``from_state``: resolve the values from the applied state as a daemon worker does (a
    retry), ignoring ``secrets`` and ``caller_untrusted``.
    """
    from reconciler.engine.runs import execute_claimed
    from reconciler.engine.working import Lease

    stop = cancel if cancel is not None else threading.Event()
    me = worker_id()
    if stop.is_set():
        store.append_log(run.id, "\nreconciler: cancelled by the user\n")
        store.finish_run(run.id, "cancelled", clock(), "cancelled before it started")
        final = store.get_run(run.id)
        assert final is not None
        return final
    if run.status == "running" and run.worker == me:
        claimed: RunRecord | None = run  # created claimed (prepare_run(claim=True))
    else:
        claimed = store.claim_run(run.id, me, lease_seconds, clock())
    if claimed is None:
        raise ExecutionError(f"run {run.id} is not queued any more")
    lease = Lease(me, lease_seconds, stop, threading.Event())
    final = execute_claimed(
        store,
        claimed,
        lease,
        executor,
        _FunctionClock(clock),
        on_progress,
        given=None if from_state else (secrets, caller_untrusted),
    )
    if final is None:
        got = store.get_run(run.id)
        assert got is not None
        return got
    return final


class _FunctionClock:
    """A :class:`~reconciler.clock.Clock` over a ``now()`` function (the CLI's and tests')."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep_until(
        self, deadline: datetime, wake: threading.Event, *, give_up: float | None = None
    ) -> bool:
        from reconciler.clock import SystemClock

        return SystemClock().sleep_until(deadline, wake, give_up=give_up)


@contextlib.contextmanager
def cancel_on_signals() -> Iterator[threading.Event]:
    """While inside, SIGINT, SIGTERM and SIGHUP interrupt nothing: they set the event that is
    yielded, for :func:`execute_run` to cancel the run at its next step. So a signal that
    arrives while the run is being created, claimed or checked out still ends it
    ``cancelled`` (never ``queued`` or ``running`` for ever). A signal the process was
    started ignoring stays ignored (:func:`caught_stop_signals`). Main thread only."""
    event = threading.Event()

    def handler(signum: int, frame: object) -> None:
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in caught_stop_signals()}
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def caught_stop_signals() -> list[signal.Signals]:
    """The stop signals a run catches: all but those the process was started ignoring, which
    stay ignored as POSIX tools leave them (``nohup`` ignores SIGHUP so that a closed terminal
    does not stop the command; a non-interactive shell starts a background job ignoring
    SIGINT)."""
    return [s for s in _STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]


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
    """A run as the contract's JSON object (``runs``, ``runs show``, the API), with its
    ``provenance`` (:func:`reconciler.engine.provenance.provenance_json`)."""
    from reconciler.engine.provenance import provenance_json

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
        "retry_of": r.retry_of,
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
        "provenance": provenance_json(r),
    }


def dumps_run(r: RunRecord) -> str:
    return json.dumps(run_json(r), indent=2)
