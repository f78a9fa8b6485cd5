"""The run lifecycle shared by the daemon, the HTTP API and the CLI: submit -> claim -> execute.

* *submit* (:func:`reconciler.engine.running.prepare_run`): check a request against the applied
  state and queue it; caller values are recorded on the run as data, secrets stay references.
* *claim*: the store's ``claim_next_run`` (a worker of the daemon) or ``claim_run`` (a one-shot
  ``reconciler run``), with a lease token.
* *execute* (:func:`execute_claimed`): resolve the variables again from the applied state (a
  schedule's values and ``valueFrom`` secrets come from Git and are read here, in the worker,
  never stored), check out the run's commit, run it, renew the lease from a heartbeat, honour a
  cancel request, and record the outcome in one transaction that is refused when the lease was
  lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.clock import Clock
from reconciler.engine.working import LEASE_SECONDS, Heartbeat, Lease
from reconciler.errors import ExecutionError, ReconcilerError, SourceError, UsageError
from reconciler.executors.spec import (
    Executor,
    Progress,
    RunHandle,
    RunOutcome,
    RunRequest,
    hosts_for_targets,
)
from reconciler.model.common import Targets
from reconciler.model.documents import Schedule
from reconciler.model.variables import resolve
from reconciler.stores.base import (
    FINAL_STATUSES,
    SENSITIVE_PLACEHOLDER,
    DriftRecord,
    HostResult,
    NewRun,
    RunId,
    RunRecord,
    StateStore,
)

log = logging.getLogger("reconciler.runs")


def _variables(
    store: StateStore, run: RunRecord, template_spec: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(trusted, untrusted, secrets) for ``run``: a schedule's from Git, a caller's as data."""
    from reconciler.engine.running import resolve_secret

    schedule_values: dict[str, Any] | None = None
    caller: dict[str, Any] = {}
    if run.schedule is not None and (
        run.trigger in ("schedule", "catch-up", "retry") or not run.untrusted
    ):
        # a schedule's slot, or a dry-run of a schedule (no caller values): the values and
        # secret references are the applied schedule's, from Git
        rec = store.get_object("Schedule", run.schedule)
        if rec is None:
            raise ExecutionError(f'schedule "{run.schedule}" is not applied any more')
        schedule_values = Schedule.model_validate_json(rec.body).spec.variables
    else:
        # only what the caller gave is theirs (data); defaults come from Git again
        for k in run.untrusted:
            if k in run.variables:
                caller[k] = run.variables[k]
        for k, v in run.variables.items():
            prompt = template_spec.prompt(k)
            if prompt is not None and prompt.sensitive and v in (SENSITIVE_PLACEHOLDER, ""):
                raise ExecutionError(
                    f'variable "{k}" is sensitive: a value given by a caller is never '
                    "stored, so this queued run cannot be executed by another process"
                )
    resolved = resolve(template_spec, schedule_values, caller)
    if resolved.problems:
        raise ExecutionError("; ".join(p.message for p in resolved.problems))
    secrets = {k: str(v) for k, v in resolved.secret_values.items()}
    for name, ref in resolved.secrets.items():
        secrets[name] = resolve_secret(ref)
    return dict(resolved.trusted), dict(resolved.untrusted), secrets


def execute_claimed(
    store: StateStore,
    run: RunRecord,
    lease: Lease,
    executor: Executor,
    clock: Clock,
    on_progress: Callable[[Progress], None] | None = None,
    given: tuple[Mapping[str, str], Mapping[str, Any]] | None = None,
) -> RunRecord | None:
    """Execute a run this worker has claimed and record it; the final record, or None when
    the lease was lost (the run was abandoned meanwhile and nothing is recorded).

    ``given`` is (secrets, untrusted values) held in memory by the process that submitted the
    run (``reconciler run``: a sensitive ``--var`` is never stored); without it they are
    resolved here from the applied state. Whatever happens once it is claimed, the run ends
    in a final status and its checkout is removed. ``lease.cancelled`` (a signal, ``cancel``,
    overlap ``cancel``, the end of a drain) is looked at between the steps and while the run
    executes; the heartbeat renews the lease and turns a cancel requested in the state into
    ``lease.cancelled``.
    """
    from reconciler.engine.planning import applied_source
    from reconciler.engine.running import (
        _DRIFT_STATE,
        _host_record,
        applied_inventory,
        applied_template,
        checkout,
        secret_env_names,
    )

    tmp: Path | None = None
    handle: RunHandle | None = None
    outcome: RunOutcome | None = None

    def stop_now() -> None:
        store.append_log(run.id, _LOST if lease.lost.is_set() else _CANCELLED)
        if handle is not None:
            handle.cancel()

    with Heartbeat(store, run.id, lease, clock, stop_now):
        try:
            template = applied_template(store, run.template)
            inv = applied_inventory(store)
            targets = Targets.model_validate(run.targets or {})
            hosts = hosts_for_targets(
                targets, list(inv.servers.values()), inv.roles, inv.environments
            )
            if given is not None:
                secrets = dict(given[0])
                untrusted = dict(given[1])
                trusted = {
                    k: v
                    for k, v in run.variables.items()
                    if k not in untrusted and k not in secrets
                }
            else:
                trusted, untrusted, secrets = _variables(store, run, template.spec)
            location = applied_source(store)
            if location is None:
                raise ExecutionError(
                    "the state does not record where the repository is: "
                    "apply it again with this version"
                )
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
                untrusted_vars=untrusted,
                secrets=secrets,
                forks=template.spec.forks,
                timeout=template.spec.timeout.total_seconds(),
                hidden_env=secret_env_names(store),
            )

            def on_log(text: str) -> None:
                if not lease.lost.is_set():
                    store.append_log(run.id, text)

            if lease.cancelled.is_set() or lease.lost.is_set():
                store.append_log(run.id, _LOST if lease.lost.is_set() else _CANCELLED)
                outcome = RunOutcome(str(run.id), "cancelled", "cancelled")
            else:
                handle = executor.start(request, on_progress, on_log)
                if lease.cancelled.is_set():  # cancelled while it was being started
                    handle.cancel()
                outcome = _wait(handle)
        except KeyboardInterrupt:  # Ctrl-C where the caller installed no handler
            store.append_log(run.id, _CANCELLED)
            if handle is None:
                outcome = RunOutcome(str(run.id), "cancelled", "cancelled")
            else:
                handle.cancel()
                outcome = handle.wait()
        except ReconcilerError as e:
            store.append_log(run.id, f"\nreconciler: the run could not be executed: {e}\n")
            store.record_outcome(run.id, lease.worker_id, "failed", str(e), [], [], clock.now())
            raise
        except Exception as e:  # a bug: the run still ends, the error goes up
            store.append_log(run.id, f"\nreconciler: the run could not be executed: {e}\n")
            store.record_outcome(run.id, lease.worker_id, "failed", str(e), [], [], clock.now())
            raise
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    assert outcome is not None
    if lease.lost.is_set():
        log.warning(
            "run %d: the lease was lost (the run was abandoned or finished elsewhere); "
            "its outcome is not recorded",
            run.id,
        )
        return None
    message = outcome.message
    if lease.cancelled.is_set() and outcome.status == "cancelled":
        message = store.cancel_note(run.id) or "cancelled"
    return _record(store, run, outcome, message, lease, clock, _host_record, _DRIFT_STATE)


_CANCELLED = "\nreconciler: cancelled by the user\n"
_LOST = "\nreconciler: this process lost the run's lease (it was reaped); stopping it\n"


def _wait(handle: RunHandle) -> RunOutcome:
    """Wait for the run to end, in short slices so that signals are handled meanwhile."""
    while True:
        with contextlib.suppress(TimeoutError):
            return handle.wait(0.2)


def _record(
    store: StateStore,
    run: RunRecord,
    outcome: RunOutcome,
    message: str,
    lease: Lease,
    clock: Clock,
    host_record: Callable[[Any], HostResult],
    drift_state: dict[str, Any],
) -> RunRecord | None:
    now = clock.now()
    drift: list[DriftRecord] = []
    for host, state in outcome.drift.items():
        result = outcome.hosts.get(host)
        details: dict[str, Any] = {"outcome": state}
        if result is not None and result.drift:
            details["tasks"] = [
                {"task": d.task, "diff": d.diff, "hidden": d.hidden} for d in result.drift
            ]
        drift.append(DriftRecord(host, run.template, run.id, drift_state[state], details, now))
    ok = store.record_outcome(
        run.id,
        lease.worker_id,
        outcome.status,
        message,
        [host_record(h) for h in outcome.hosts.values()],
        drift,
        now,
    )
    if not ok:
        log.warning("run %d: its lease was lost before the outcome was recorded", run.id)
        return None
    return store.get_run(run.id)


def submit_retry(
    store: StateStore,
    run_id: int,
    now: datetime,
    requested_by: str,
    *,
    claim_by: str | None = None,
) -> RunRecord:
    """Queue a new run for the same job as the final run ``run_id``: trigger ``retry``,
    ``retry_of`` = ``run_id``, the same template, schedule, slot, targets, mode and caller
    values, from the applied revision (a run is never re-queued itself; the ledger entry of its
    slot stays the original run's). Raises UsageError when it cannot be retried: it is not
    final yet, its template or schedule is no longer applied, or a caller gave it a sensitive
    value, which is never stored."""
    from reconciler.engine.running import applied_template

    original = store.get_run(run_id)
    if original is None:
        raise UsageError(f"no run {run_id} in the state")
    if original.status not in FINAL_STATUSES:
        raise UsageError(
            f"run {run_id} is {original.status}: only a finished run can be retried "
            f"(reconciler cancel {run_id} first)"
        )
    template = applied_template(store, original.template)
    if not template.spec.enabled:
        raise UsageError(f'template "{original.template}" is disabled (enabled: false in Git)')
    if original.schedule is not None and original.trigger in ("schedule", "catch-up", "retry"):
        if store.get_object("Schedule", original.schedule) is None:
            raise UsageError(f'schedule "{original.schedule}" is not applied any more')
    else:
        hidden = [k for k, v in original.variables.items() if v == SENSITIVE_PLACEHOLDER]
        if hidden:
            raise UsageError(
                f"run {run_id} was given the sensitive variable {hidden[0]!r}, whose value is "
                f"never stored: start it again with reconciler run {original.template} "
                f"--var {hidden[0]}=..."
            )
    run = store.create_run(
        NewRun(
            template=original.template,
            trigger="retry",
            commit=store.info().revision,
            schedule=original.schedule,
            slot=original.slot,
            variables=dict(original.variables),
            untrusted=frozenset(original.untrusted),
            targets=dict(original.targets),
            simulate=original.simulate,
            requested_by=requested_by,
            retry_of=RunId(run_id),
            claim_by=claim_by,
            claim_seconds=LEASE_SECONDS,
        ),
        now,
    )
    if run is None:  # a retry takes no slot; this cannot happen
        raise ExecutionError(f"run {run_id} could not be retried")
    return run
