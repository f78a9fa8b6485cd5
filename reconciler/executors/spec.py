"""Typed values that cross the executor boundary: requests in, progress and outcomes out. Pure.

Who uses it: the engine builds a :class:`RunRequest` (targets already resolved with
:func:`hosts_for_targets`), hands it to an :class:`Executor` (``AnsibleExecutor`` or the scripted
``FakeExecutor``) and gets a :class:`RunHandle` back, whose ``wait()`` returns a
:class:`RunOutcome`. :class:`WorkerJob` is the internal message for one ``ansible-playbook``
invocation, sent as JSON on the worker's stdin.

This module is deliberately free of pydantic and ansible imports: the worker imports it, and
every millisecond of worker start-up is paid on every run.

Vocabulary (the contract's exact strings):

- ``RunKind``: ``orchestration`` (run the playbook) or ``configuration`` (check for drift,
  optionally remediate).
- ``RunMode``: ``run`` (for real) or ``simulate`` (check mode only, nothing is changed).
- ``HostStatus``: the worst thing that happened on a host: ``ok``, ``changed``, ``failed``,
  ``unreachable``; ``skipped`` when every task was skipped.
- ``OutcomeStatus``: ``succeeded``, ``failed``, ``timed-out``, ``cancelled``.
- ``DriftOutcome``: per host of a configuration run: ``in-sync`` (checked, nothing differs),
  ``found`` (differs, not remediated), ``fixed`` (differed, remediation applied and, when
  re-checked, clean), ``still-present`` (differed and remediation failed or the re-check still
  differs), ``unknown`` (the host failed or was unreachable: never reported as in sync).
- ``FindingKind``: ``cannot-simulate`` (a task skipped in check mode, e.g. ``command``/
  ``shell``: what it would do is unknown) or ``runs-for-real`` (``check_mode: false``: it
  executes even in check mode).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from reconciler.model.common import Targets
    from reconciler.model.inventory import Group, Server

RunKind = Literal["orchestration", "configuration"]
RunMode = Literal["run", "simulate"]
HostStatus = Literal["ok", "changed", "failed", "unreachable", "skipped"]
OutcomeStatus = Literal["succeeded", "failed", "timed-out", "cancelled"]
DriftOutcome = Literal["in-sync", "found", "fixed", "still-present", "unknown"]
FindingKind = Literal["cannot-simulate", "runs-for-real"]
Phase = Literal["run", "check", "remediate", "recheck", "simulate"]

LOCALHOST = "localhost"


@dataclass(frozen=True)
class TargetHost:
    """One host of the inventory a run is given.

    ``vars`` come from Git (Inventory host vars merged over role and environment vars, with
    ``host`` as ``ansible_host``) and are trusted: Ansible templates them like any playbook
    text. ``untrusted_vars`` come from outside Git and are passed as data only.
    ``groups`` are the roles and environments of the server, exposed as inventory groups.
    """

    name: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    untrusted_vars: Mapping[str, Any] = field(default_factory=dict)
    groups: tuple[str, ...] = ()


def localhost_target() -> TargetHost:
    """The only host of a run without targets: the controller, over the local connection."""
    return TargetHost(
        name=LOCALHOST,
        vars={
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        },
    )


def target_host(
    server: Server,
    roles: Mapping[str, Group] | None = None,
    environments: Mapping[str, Group] | None = None,
) -> TargetHost:
    """A server of the Inventory as a run host: role vars, then environment vars, then host
    vars (later wins, as in Ansible where host vars beat group vars), ``host`` as
    ``ansible_host``; a local-connection server without ``ansible_python_interpreter`` runs
    modules with the controller's Python."""
    merged: dict[str, Any] = {}
    for role in server.roles:
        group = (roles or {}).get(role)
        if group is not None:
            merged.update(group.vars)
    for env in server.environments:
        group = (environments or {}).get(env)
        if group is not None:
            merged.update(group.vars)
    merged.update(server.vars)
    if server.host:
        merged["ansible_host"] = server.host
    if merged.get("ansible_connection") == "local" and "ansible_python_interpreter" not in merged:
        # Ansible gives its implicit localhost the controller's Python; a server that says
        # ``ansible_connection: local`` is the same machine and gets the same, instead of
        # interpreter discovery (which finds broken shims such as pyenv's python3.13).
        merged["ansible_python_interpreter"] = "{{ ansible_playbook_python }}"
    return TargetHost(
        name=server.name,
        vars=merged,
        groups=tuple(dict.fromkeys([*server.roles, *server.environments])),
    )


def hosts_for_targets(
    targets: Targets,
    servers: Sequence[Server],
    roles: Mapping[str, Group] | None = None,
    environments: Mapping[str, Group] | None = None,
) -> tuple[TargetHost, ...]:
    """Resolve ``targets`` against the Inventory (SPEC section 3) into run hosts.

    No targets at all means localhost only. Targets that match no server give an empty tuple:
    the caller must report that (a run request with no hosts also runs on localhost, which is
    the contract for *no targets*, not for *targets that match nothing*).
    """
    from reconciler.model.targets import resolve_targets

    if targets.empty:
        return (localhost_target(),)
    chosen = resolve_targets(targets, {s.name: s for s in servers})
    return tuple(target_host(s, roles, environments) for s in chosen)


@dataclass(frozen=True)
class RunRequest:
    """Everything one run needs, resolved: no lookups happen inside the executor.

    ``project_dir`` holds the checked-out revision the run belongs to; ``playbook`` is relative
    to it. ``hosts`` empty means localhost only. ``trusted_vars`` come from Git (template
    defaults, then schedule values); ``untrusted_vars`` come from the CLI or API caller and win
    over them, but Ansible never evaluates templates inside them. ``secrets`` (name -> value,
    resolved at run time) reach ansible-playbook through a FIFO only and are redacted from
    every event and log line. ``timeout`` and ``kill_grace`` are seconds.
    ``allow_real_tasks_in_simulation`` lets a simulation run a playbook that has
    ``check_mode: false`` tasks (they then really run); by default such a simulation is refused.
    ``recheck``: after remediation, check the remediated hosts again to confirm the fix.
    ``hidden_env``: environment variables that no process of the run may receive, whatever
    their name (the engine gives every variable a ``valueFrom`` of the applied state names);
    a variable holding one of ``secrets`` is never passed either (see
    :mod:`reconciler.executors.environment`).
    """

    run_id: str
    project_dir: str
    playbook: str
    kind: RunKind = "orchestration"
    mode: RunMode = "run"
    remediate: bool = False
    recheck: bool = True
    hosts: tuple[TargetHost, ...] = ()
    trusted_vars: Mapping[str, Any] = field(default_factory=dict)
    untrusted_vars: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    forks: int = 5
    timeout: float = 3600.0
    kill_grace: float = 5.0
    allow_real_tasks_in_simulation: bool = False
    hidden_env: frozenset[str] = frozenset()

    def effective_hosts(self) -> tuple[TargetHost, ...]:
        return self.hosts or (localhost_target(),)


@dataclass(frozen=True)
class TaskDiff:
    """What one task would change (check) or changed (apply) on one host.

    ``hidden`` is true for ``no_log`` tasks: the host changed but the details are censored.
    ``diff`` is a unified diff of before/after (capped), empty when Ansible gave none.
    """

    task: str
    before_header: str | None = None
    after_header: str | None = None
    diff: str = ""
    hidden: bool = False


@dataclass(frozen=True)
class HostOutcome:
    """Per-host result of a run, folded from runner events.

    The counts are the ``playbook_on_stats`` of the run; for a remediated host they are those of
    the remediation run (what actually happened to it). ``drifted`` is None when unknown or not
    a configuration run.
    """

    name: str
    status: HostStatus
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    drifted: bool | None = None
    drift: tuple[TaskDiff, ...] = ()
    message: str = ""


@dataclass(frozen=True)
class SimulationFinding:
    """A task whose check-mode result does not tell the truth; ``host`` None = found statically."""

    kind: FindingKind
    task: str
    host: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class RunOutcome:
    """The end of a run: status, one-line message, per-host results, drift and findings."""

    run_id: str
    status: OutcomeStatus
    message: str
    hosts: Mapping[str, HostOutcome] = field(default_factory=dict)
    drift: Mapping[str, DriftOutcome] = field(default_factory=dict)
    findings: tuple[SimulationFinding, ...] = ()
    rc: int | None = None
    seconds: float = 0.0
    log_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    """One live update: a task result on a host (for a TTY view) or a phase change.

    ``event`` is the runner event name (``runner_on_ok`` ...) or ``phase`` when a new phase
    (``check``, ``remediate`` ...) starts; ``status`` is the host status for task results.
    """

    run_id: str
    phase: Phase
    event: str
    host: str | None = None
    task: str | None = None
    status: HostStatus | None = None
    text: str = ""


ProgressCallback = Callable[[Progress], None]
LogCallback = Callable[[str], None]


class RunHandle(Protocol):
    """A started run."""

    run_id: str

    def events(self) -> Iterator[Progress]:
        """Progress until the run ends (each handle's events can be iterated once)."""
        ...

    def cancel(self) -> None:
        """Ask the run to stop; ``wait()`` then returns status ``cancelled``."""
        ...

    def wait(self, timeout: float | None = None) -> RunOutcome:
        """Block until the run ends; raises TimeoutError if ``timeout`` passes first."""
        ...

    def log_text(self) -> str:
        """The (capped) textual log so far."""
        ...


class Executor(Protocol):
    """Starts runs. Implementations: ``AnsibleExecutor`` and ``FakeExecutor``."""

    def start(
        self,
        request: RunRequest,
        on_progress: ProgressCallback | None = None,
        on_log: LogCallback | None = None,
    ) -> RunHandle: ...


@dataclass(frozen=True)
class WorkerJob:
    """One ansible-playbook invocation, as the worker reads it from stdin (JSON).

    ``environment`` is what ansible-playbook is started with (runner adds its own variables):
    the worker makes it its ``os.environ``; the worker's own environment has less still."""

    run_id: str
    phase: Phase
    project_dir: str
    playbook: str
    hosts: tuple[TargetHost, ...]
    trusted_vars: Mapping[str, Any]
    untrusted_vars: Mapping[str, Any]
    secrets: Mapping[str, str] = field(repr=False)
    forks: int
    timeout: float
    kill_grace: float
    check: bool
    diff: bool
    venv_bin: str
    environment: Mapping[str, str] = field(repr=False)
    workdir_root: str | None = None
    keep_workdir: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerJob:
        raw = json.loads(text)
        raw["hosts"] = tuple(
            TargetHost(
                name=h["name"],
                vars=h["vars"],
                untrusted_vars=h["untrusted_vars"],
                groups=tuple(h["groups"]),
            )
            for h in raw["hosts"]
        )
        return cls(**raw)
