"""The state store port: one typed interface and plain records. Pure. The port knows no backend:
:func:`reconciler.stores.opening.open_store` picks one.

The store holds the *actual state* of reconciler:

* applied objects, ``(kind, name)`` -> content hash, canonical JSON body, source revision,
  ``managed`` flag, object state (schedules) with a reason;
* a ``serial`` that every write to the applied objects bumps, and the applied-revision history;
* the slot ledger (one row per ``(schedule, slot)``: the database's "at most once");
* runs, per-host results, run logs (capped), drift records;
* approvals, API keys (only a SHA-256 of the secret), leader leases.

Who calls it: ``engine/`` and ``cli/``. Backends: :mod:`reconciler.stores.sqlite` (stdlib
``sqlite3``, the default) and :mod:`reconciler.stores.postgres` (psycopg 3). Both run the same
queries (:mod:`reconciler.stores._sql`) and the same contract tests.

Time: every instant goes in as an aware :class:`~datetime.datetime` argument, is stored in UTC
and comes back as an aware UTC datetime. The store never reads the clock itself: where it needs
"now" without a caller (the time a migration ran) it asks the database; on PostgreSQL leases are
judged by the database's ``now()`` (see :mod:`reconciler.stores._sql`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, NewType, Protocol, TypeAlias, get_args

from reconciler.errors import StateConflict
from reconciler.model.firing import FiringSpec

RunId = NewType("RunId", int)

#: The schedules' running and queued run ids, oldest first (:meth:`StateStore.schedule_activity`).
Activity: TypeAlias = dict[str, tuple[list[RunId], list[RunId]]]
#: Given the activity of the schedules of a :meth:`StateStore.record_fires` call, read in its
#: transaction: the batches to write (the same, or decided again where the runs changed).
Recheck: TypeAlias = Callable[[Activity], Sequence["FireBatch"]]
#: Called by :meth:`StateStore.record_fires` in its transaction after every row is written and
#: before the commit (the firing loop waits there for the fire time of a write made ahead); an
#: exception it raises rolls the whole write back.
Hold: TypeAlias = Callable[[], None]

JsonValue: TypeAlias = Any
"""A value that :func:`json.dumps` accepts (kept loose on purpose: it is data, not code)."""

ObjectState = Literal["active", "paused", "awaiting-approval", "denied", "disabled"]
"""State of an applied schedule.

``active`` fires; ``paused`` is ``enabled: false`` in Git; ``awaiting-approval`` waits for
approvers; ``denied`` was denied for this content; ``disabled`` was turned off by the product
itself (e.g. its owner was removed), with a reason."""

RunStatus = Literal[
    "queued", "running", "succeeded", "failed", "cancelled", "timed-out", "abandoned", "skipped"
]
"""``queued`` waits for a worker; ``running`` is leased by one; the rest are final:
``succeeded``/``failed`` (playbook outcome), ``cancelled`` (by a user), ``timed-out`` (over its
timeout), ``abandoned`` (its process ended without finishing it: its lease expired or its run
lock is free, see :meth:`StateStore.reap_runs`), ``skipped`` (never executed)."""

FINAL_STATUSES: frozenset[str] = frozenset(
    {"succeeded", "failed", "cancelled", "timed-out", "abandoned", "skipped"}
)

RunTrigger = Literal["schedule", "api", "cli", "catch-up", "retry"]
"""Why a run exists: a schedule slot, the HTTP API, ``reconciler run``, a missed slot caught
up after downtime, or a retry of a failed run."""

SkipReason = str
"""Why a slot did not produce a run. Known values are :data:`SKIP_REASONS`; later issues may add
more, so the column is free text."""

SKIP_REASONS: tuple[str, ...] = (
    "overlap",  # the previous run of the schedule was still going
    "misfire",  # the slot was found too late (beyond the misfire grace)
    "paused",  # the schedule is paused
    "owner-invalid",  # its owner is no longer a valid user
    "approval-pending",  # the content waits for approval
    "denied",  # the content was denied (until it changes in Git)
    "desired-state-invalid",  # the current commit failed validation
)

DriftState = Literal["drifted", "in-sync", "unknown"]
"""``unknown``: the server failed or was unreachable, so nothing can be said."""

Decision = Literal["approve", "deny"]
Scope = Literal["trigger", "read", "approve"]

#: Marker written as the value of the redacted variables.
SENSITIVE_PLACEHOLDER = "<sensitive>"


#: What ``rc_runs.provenance`` holds; the commit, trigger and slot are the run's own columns.
PROVENANCE_KEYS: tuple[str, ...] = ("signing_key", "content_hash", "approvers", "replica")


def replica_of(worker_id: str) -> str:
    """The replica a worker id belongs to: a daemon's workers are ``replica/wN/nonce``, a
    process that executes its own run (``reconciler run``) is ``host:pid``."""
    return worker_id.split("/", 1)[0]


def as_utc(value: datetime, what: str = "instant") -> datetime:
    """``value`` in UTC; a naive datetime is a programming error (ValueError)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def hash_secret(secret: str) -> str:
    """The only form in which an API key secret is stored: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# records (immutable values handed out by the store) and write requests


@dataclass(frozen=True, slots=True)
class StateInfo:
    """The header of a state: serial, last applied revision, schema version."""

    serial: int
    revision: str | None
    applied_at: datetime | None
    schema_version: int
    backend: Literal["sqlite", "postgresql"]
    location: str
    """A path or a URL with any password removed."""
    signing_key: str | None = None
    """The key that signed the applied revision (``requireSignedCommits``): an SSH key's type
    and fingerprint (``ssh-ed25519 SHA256:...``) or an OpenPGP fingerprint; None when unsigned
    commits are allowed."""


@dataclass(frozen=True, slots=True)
class ObjectWrite:
    """One object to create or update in :meth:`StateStore.apply_changes`."""

    kind: str
    name: str
    content_hash: str
    body: str
    """Canonical JSON of the document (the planner produces it; the store keeps it verbatim)."""
    managed: bool = True
    """True when the reconciler created the object; prune deletes only managed objects."""
    state: ObjectState | None = None
    """For schedules; ``None`` for kinds without a state."""
    state_reason: str | None = None
    authors: tuple[str, ...] = ()
    """E-mails of the commit authors of this content (the author never approves it)."""
    approval_hash: str | None = None
    """For schedules whose template requires approval: the content hash approvals are for."""


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """An applied object."""

    kind: str
    name: str
    content_hash: str
    body: str
    revision: str | None
    managed: bool
    state: ObjectState | None
    state_reason: str | None
    serial: int
    """The serial of the write that last changed this object."""
    created_at: datetime
    updated_at: datetime
    authors: tuple[str, ...] = ()
    """E-mails of the commit authors of this content (the author never approves it)."""
    approval_hash: str | None = None
    """For schedules whose template requires approval: the content hash approvals are for."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One applied revision. ``created``, ``updated`` and ``deleted`` are the plan's summary
    (what its message says), not the reconciler's own objects written with it."""

    serial: int
    revision: str | None
    applied_at: datetime
    created: int
    updated: int
    deleted: int
    message: str | None = None
    signing_key: str | None = None
    """The key that signed this revision (see :attr:`StateInfo.signing_key`)."""


@dataclass(frozen=True, slots=True)
class SlotEntry:
    """One ledger line: a slot that became a run, or was skipped with a reason.

    A range entry (``count > 1``) stands for ``count`` consecutive slots from ``slot`` to
    ``until`` skipped for the same reason (a long outage of an ``every: 1s`` schedule)."""

    schedule: str
    slot: datetime
    run_id: RunId | None
    skip_reason: SkipReason | None
    detail: str | None
    recorded_at: datetime
    until: datetime | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to enqueue with :meth:`StateStore.create_run`.

    ``variables`` are the caller's requested values. Names listed in ``sensitive`` are stored
    as :data:`SENSITIVE_PLACEHOLDER`, never with their value; values that come from
    ``valueFrom`` are resolved at run time and must not be passed here at all.
    """

    template: str
    trigger: RunTrigger
    commit: str | None
    schedule: str | None = None
    slot: datetime | None = None
    variables: Mapping[str, JsonValue] = field(default_factory=dict)
    sensitive: frozenset[str] = frozenset()
    targets: Mapping[str, JsonValue] = field(default_factory=dict)
    simulate: bool = False
    not_before: datetime | None = None
    """``run --at TIME``: not claimable before this instant."""
    requested_by: str | None = None
    """A user or an API key name (never the key itself)."""
    retry_of: RunId | None = None
    message: str | None = None
    wait_for: RunId | None = None
    """Overlap ``queue``: not claimable while this run is queued or running."""
    status: Literal["queued", "failed"] = "queued"
    """``failed``: recorded final at once (a slot whose owner lost ``run``: the run says why)."""
    untrusted: frozenset[str] = frozenset()
    """Names among ``variables`` that came from outside Git (CLI, API): data, never templated."""
    claim_by: str | None = None
    """Insert it claimed by this worker (``reconciler run`` executing its own run)."""
    claim_seconds: float = 120.0
    provenance: Mapping[str, JsonValue] = field(default_factory=dict)
    """Where the run comes from beyond its own columns (:data:`PROVENANCE_KEYS`): the key that
    signed its commit, the approval content hash and its approvers. The replica is added when
    a worker claims the run. One mapping may be shared by every slot of a schedule."""


@dataclass(frozen=True, slots=True)
class LedgerWrite:
    """One ledger entry the firing loop records: a run for ``slot`` or a skip with a reason
    (``until``/``count`` for a range of consecutive skipped slots)."""

    slot: datetime
    run: NewRun | None = None
    skip_reason: SkipReason | None = None
    detail: str | None = None
    until: datetime | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class FireBatch:
    """What one firing pass records for one schedule, guarded by its cursor.

    ``cursor`` is the last slot accounted for as the firing code read it (None: the schedule
    was never fired); the batch is recorded only if the stored cursor still has that value and
    the same ``when_hash``, then the cursor moves to ``new_cursor``. ``cancel``: runs of the
    schedule to cancel first (overlap ``cancel``)."""

    schedule: str
    cursor: datetime | None
    new_cursor: datetime
    when_hash: str
    entries: tuple[LedgerWrite, ...]
    cancel: tuple[RunId, ...] = ()


@dataclass(frozen=True, slots=True)
class FireResult:
    """The outcome of one :class:`FireBatch`: ``ok`` False when another replica moved the
    cursor first (nothing was written); ``runs`` are the runs created and ``skipped`` the
    skips written, as (reason, slots) pairs: the entries of slots that another replica had
    recorded first (two replicas firing a new schedule at once) are in neither."""

    schedule: str
    ok: bool
    runs: tuple[RunRecord, ...] = ()
    skipped: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far the ledger of a schedule is complete: every slot up to ``last_slot`` of the
    ``when`` with ``when_hash`` has its entry."""

    schedule: str
    last_slot: datetime
    when_hash: str


class FiringHead(NamedTuple):
    """An applied schedule as the firing loop reads it at start-up: its head, its firing row
    (:class:`~reconciler.model.firing.FiringSpec`, kept by the store beside the body) and its
    cursor, from one query. ``firing`` is None (and ``body`` given) for a schedule whose
    content was applied before the store kept firing rows."""

    name: str
    serial: int
    """The serial of the write that last changed the schedule (its content or its state)."""
    state: ObjectState | None
    state_reason: str | None
    revision: str | None
    updated_at: datetime
    firing: FiringSpec | None
    body: str | None
    cursor: Cursor | None
    approval_hash: str | None = None
    """The content hash the schedule's approval state was decided for (provenance)."""


@dataclass(frozen=True, slots=True)
class Replica:
    """A ``serve`` process that heartbeats the state."""

    id: str
    host: str
    pid: int
    started: datetime
    seen: datetime
    workers: int


@dataclass(frozen=True, slots=True)
class ReconcileAttempt:
    """The last reconcile pass: which revision it read and whether it was good.

    ``diagnostics`` are the contract's diagnostic objects (JSON) when it failed validation;
    ``message`` is one line for a failure that is not the commit's (fetch, database)."""

    revision: str | None
    at: datetime
    ok: bool
    diagnostics: tuple[Mapping[str, JsonValue], ...] = ()
    message: str | None = None


@dataclass(frozen=True, slots=True)
class SystemJob:
    """One of the daemon's own recurring jobs (reconcile, prune-history, reap-abandoned) and
    when a replica last ran it."""

    name: str
    every_seconds: float
    last_at: datetime
    detail: str | None = None


HeartbeatAnswer = Literal["ok", "cancel", "lost"]
"""What renewing a run's lease found: keep going, a cancel was requested, or the lease is no
longer ours (the run was abandoned or finished by someone else: record nothing)."""


@dataclass(frozen=True, slots=True)
class HostResult:
    """Per-server counters of one run."""

    server: str
    status: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    drifted: int = 0


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as stored."""

    id: RunId
    schedule: str | None
    template: str
    trigger: RunTrigger
    slot: datetime | None
    status: RunStatus
    commit: str | None
    created_at: datetime
    not_before: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    variables: Mapping[str, JsonValue]
    targets: Mapping[str, JsonValue]
    simulate: bool
    message: str | None
    requested_by: str | None
    retry_of: RunId | None
    worker: str | None
    lease_expires: datetime | None
    log_size: int
    log_truncated: bool
    untrusted: tuple[str, ...] = ()
    """Names of ``variables`` that came from outside Git: passed to Ansible as data only."""
    hosts: tuple[HostResult, ...] = ()
    provenance: Mapping[str, JsonValue] = field(default_factory=dict)
    """As stored (see :attr:`NewRun.provenance`), with ``replica`` once a worker claimed it."""


@dataclass(frozen=True, slots=True)
class LogSlice:
    """Part of a run log: ``text`` from ``offset`` to ``next_offset`` (UTF-8 byte offsets)."""

    text: str
    offset: int
    next_offset: int
    truncated: bool
    """The log reached its cap; later output was dropped (a marker line says so)."""


@dataclass(frozen=True, slots=True)
class DriftRecord:
    """The configuration drift of one server for one template, as found by one run."""

    server: str
    template: str
    run_id: RunId | None
    state: DriftState
    details: Mapping[str, JsonValue]
    at: datetime


@dataclass(frozen=True, slots=True)
class Approval:
    """One user's decision on one content hash of a schedule (the latest decision counts)."""

    schedule: str
    content_hash: str
    user: str
    decision: Decision
    at: datetime
    reason: str | None = None
    via: str = "cli"
    """Where the decision came from: ``cli``, ``api``, ``github``, ``gitlab`` or ``gitea``."""
    revision: str | None = None
    """The commit that was reviewed (forge reviews), None for the CLI and the API."""


@dataclass(frozen=True, slots=True)
class DecisionWrite:
    """One user's decision to record (``decision`` None withdraws theirs) in
    :meth:`StateStore.record_decisions`."""

    schedule: str
    content_hash: str
    user: str
    decision: Decision | None
    at: datetime
    reason: str | None = None
    via: str = "cli"
    revision: str | None = None


@dataclass(frozen=True, slots=True)
class ApprovalStateWrite:
    """The state an applied schedule gets from its decisions, written only while its applied
    ``approval_hash`` is still this one and it is ``awaiting-approval``, ``denied`` or
    ``active`` (a paused or disabled schedule keeps its state).

    ``reopen``: the slot of a past-due ``at:`` that a forced approval lets run: its
    ``approval-pending`` ledger entry and the schedule's cursor are removed in the same
    transaction, so the firing loop records the slot again, as a run, exactly once."""

    schedule: str
    approval_hash: str
    state: ObjectState
    reason: str | None
    reopen: datetime | None = None


Settle = Callable[[Sequence["Approval"]], Sequence[ApprovalStateWrite]]
"""Given every decision recorded for the (schedule, content hash) pairs just written (read in
the same transaction), the states to write. A pure function: it runs inside the transaction."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key; only ``key_hash`` (SHA-256) of the secret is ever stored."""

    name: str
    key_hash: str
    scopes: tuple[Scope, ...]
    templates: tuple[str, ...]
    user: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Lease:
    """A named lease (leader election between replicas)."""

    name: str
    owner: str
    expires: datetime


NotifyEventName = Literal[
    "success", "failure", "drift", "approval", "missed", "disabled", "stalled"
]
"""What a notification reports (the contract's ``notify.on`` words): a run ``succeeded``; a
run ``failed``, ``timed-out`` or was ``abandoned``; a server's drift changed; a schedule waits
for approval, was approved or denied; slots were skipped by misfire after an outage; a
schedule was disabled (its owner lost ``run``); a commit failed validation (stalled)."""

OutboxStatus = Literal["pending", "sending", "sent", "failed"]
"""``pending`` waits for its next attempt; ``sending`` is claimed by a sender until its claim
expires; ``sent`` was answered 2xx (or accepted by the SMTP server); ``failed`` gave up after
the last attempt (or its channel is gone)."""


@dataclass(frozen=True, slots=True)
class OutboxWrite:
    """One notification to write to the outbox, in the transaction of the event it reports.

    ``payload`` is the JSON body without ``delivery_id`` and ``sent_at`` (added when it is
    sent); it never holds a secret value. ``delivery_id`` is a UUID made by the caller, the
    same on every attempt. ``mark``: the key of a :class:`NotifyMark` of the same write; the
    row is written only when that mark changed (drift and stall dedupe)."""

    delivery_id: str
    event: NotifyEventName
    channel: str
    payload: Mapping[str, JsonValue]
    schedule: str | None = None
    template: str | None = None
    run_id: RunId | None = None
    mark: str | None = None


@dataclass(frozen=True, slots=True)
class NotifyMark:
    """The last notified fingerprint of something that notifies on change only (the drift of
    a server for a schedule, the stalled revision): set in the same transaction; the rows
    naming it are written only when the stored fingerprint differed."""

    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One notification in the outbox."""

    id: int
    delivery_id: str
    event: NotifyEventName
    channel: str
    schedule: str | None
    template: str | None
    run_id: RunId | None
    payload: Mapping[str, JsonValue]
    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    claimed_by: str | None
    claim_expires: datetime | None
    created_at: datetime
    sent_at: datetime | None


# --------------------------------------------------------------------------------------------
# the port


class StateStore(Protocol):
    """The state store. Every method is one transaction; records are immutable values.

    Errors: :class:`~reconciler.errors.StateUnavailable` (database down, connection lost: the
    transaction is rolled back), :class:`~reconciler.errors.StateConflict` (a concurrent writer
    won, or the wait for its lock ran out), :class:`~reconciler.errors.StateCorrupt`,
    :class:`~reconciler.errors.StateTooNew` (on open).
    """

    # -- lifecycle and header
    def close(self) -> None: ...
    def __enter__(self) -> StateStore: ...
    def __exit__(self, *exc: object) -> None: ...
    def info(self) -> StateInfo: ...
    def serial(self) -> int: ...

    # -- applied objects
    def get_object(self, kind: str, name: str) -> ObjectRecord | None: ...
    def list_objects(self, kind: str | None = None) -> list[ObjectRecord]: ...
    def list_object_heads(self, kind: str | None = None) -> list[ObjectRecord]: ...
    def apply_changes(
        self,
        expected_serial: int,
        revision: str | None,
        upserts: Sequence[ObjectWrite],
        deletes: Sequence[tuple[str, str]],
        now: datetime,
        message: str | None = None,
        signing_key: str | None = None,
        notifications: Sequence[OutboxWrite] = (),
        counts: tuple[int, int, int] | None = None,
    ) -> int: ...
    def set_object_state(
        self,
        kind: str,
        name: str,
        state: ObjectState,
        reason: str | None,
        now: datetime,
        expected_serial: int | None = None,
    ) -> int: ...
    def history(self, limit: int = 50) -> list[HistoryEntry]: ...

    # -- slot ledger
    def skip_slot(
        self, schedule: str, slot: datetime, reason: SkipReason, now: datetime, detail: str | None
    ) -> bool: ...
    def get_slot(self, schedule: str, slot: datetime) -> SlotEntry | None: ...
    def list_slots(
        self, schedule: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[SlotEntry]: ...

    # -- runs
    def create_run(self, run: NewRun, now: datetime) -> RunRecord | None: ...
    def get_run(self, run_id: int) -> RunRecord | None: ...
    def list_runs(
        self,
        schedule: str | None = None,
        status: RunStatus | None = None,
        template: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]: ...
    def last_runs(self) -> dict[str, RunRecord]: ...
    def claim_next_run(
        self, worker_id: str, lease_seconds: float, now: datetime
    ) -> RunRecord | None: ...
    def claim_run(
        self, run_id: int, worker_id: str, lease_seconds: float, now: datetime
    ) -> RunRecord | None: ...
    def renew_lease(
        self, run_id: int, worker_id: str, lease_seconds: float, now: datetime
    ) -> bool: ...
    def expired_runs(self, now: datetime) -> list[RunRecord]: ...
    def reap_runs(self, now: datetime) -> list[RunId]: ...
    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        now: datetime,
        message: str | None = None,
        worker_id: str | None = None,
    ) -> bool: ...
    def set_host_results(self, run_id: int, results: Sequence[HostResult]) -> None: ...
    def append_log(self, run_id: int, text: str) -> bool: ...
    def read_log(self, run_id: int, offset: int = 0, limit: int | None = None) -> LogSlice: ...

    # -- drift
    def record_drift(self, records: Sequence[DriftRecord]) -> None: ...
    def list_drift(
        self, server: str | None = None, template: str | None = None, latest: bool = True
    ) -> list[DriftRecord]: ...

    # -- pages of the dashboard (api/dashboard/, engine/browsing.py): bounded, indexed reads
    def page_objects(
        self,
        kind: str,
        after: str | None = None,
        limit: int = 50,
        state: ObjectState | None = None,
        contains: str | None = None,
        needs_approval: bool = False,
    ) -> list[ObjectRecord]: ...
    def count_states(self, kind: str) -> dict[str, int]: ...
    def last_runs_of(self, schedules: Sequence[str]) -> dict[str, RunRecord]: ...
    def record_approval(self, approval: Approval) -> None: ...
    def list_approvals(
        self, schedule: str | None = None, content_hash: str | None = None
    ) -> list[Approval]: ...
    def create_api_key(
        self,
        name: str,
        secret: str,
        scopes: Sequence[Scope],
        templates: Sequence[str],
        user: str | None,
        now: datetime,
    ) -> ApiKey: ...
    def find_api_key(self, secret: str) -> ApiKey | None: ...
    def list_api_keys(self) -> list[ApiKey]: ...
    def revoke_api_key(self, name: str, now: datetime) -> bool: ...
    def acquire_lease(self, name: str, owner: str, ttl_seconds: float, now: datetime) -> bool: ...
    def release_lease(self, name: str, owner: str) -> bool: ...
    def get_lease(self, name: str) -> Lease | None: ...

    # -- the live half: firing cursors, replicas, reconcile status, cancel, heartbeats
    def fire_cursors(self) -> dict[str, Cursor]: ...
    def firing_heads(self, names: Sequence[str] | None = None) -> list[FiringHead]: ...
    def record_fires(
        self,
        batches: Sequence[FireBatch],
        now: datetime,
        recheck: Recheck | None = None,
        hold: Hold | None = None,
    ) -> list[FireResult]: ...
    def schedule_activity(
        self, schedules: Sequence[str] | None = None
    ) -> dict[str, tuple[list[RunId], list[RunId]]]: ...
    def request_cancel(self, run_id: int, now: datetime, by: str | None) -> RunRecord | None: ...
    def heartbeat(
        self, run_id: int, worker_id: str, lease_seconds: float, now: datetime
    ) -> HeartbeatAnswer: ...
    def beat_replica(self, replica: Replica) -> None: ...
    def list_replicas(self, seen_since: datetime) -> list[Replica]: ...
    def remove_replica(self, replica_id: str) -> bool: ...
    def record_attempt(
        self,
        attempt: ReconcileAttempt,
        notifications: Sequence[OutboxWrite] = (),
        marks: Sequence[NotifyMark] = (),
    ) -> None: ...
    def last_attempt(self) -> ReconcileAttempt | None: ...
    def queue_counts(self) -> dict[str, int]: ...
    def state_counts(self, kind: str = "Schedule") -> dict[str, int]: ...
    def cancel_note(self, run_id: int) -> str | None: ...
    def record_system(self, job: SystemJob) -> None: ...
    def list_system(self) -> list[SystemJob]: ...
    def prune_history(self, keep_runs: int, keep_days: int, now: datetime) -> int: ...
    def record_outcome(
        self,
        run_id: int,
        worker_id: str,
        status: RunStatus,
        message: str | None,
        hosts: Sequence[HostResult],
        drift: Sequence[DriftRecord],
        now: datetime,
        notifications: Sequence[OutboxWrite] = (),
        marks: Sequence[NotifyMark] = (),
    ) -> bool: ...

    # -- approvals with their sources and authors (engine/approving.py)
    def record_decisions(
        self, writes: Sequence[DecisionWrite], settle: Settle, now: datetime
    ) -> list[str]: ...

    # -- webhook deliveries (api/routes/webhooks.py, engine/webhooks.py)
    def record_delivery(self, delivery: Delivery) -> bool: ...
    def claim_deliveries(
        self, now: datetime, limit: int = 20, stale_seconds: float = 300.0
    ) -> list[Delivery]: ...
    def finish_delivery(
        self,
        forge: str,
        delivery_id: str,
        status: DeliveryStatus,
        detail: str | None,
        now: datetime,
    ) -> bool: ...
    def get_delivery(self, forge: str, delivery_id: str) -> Delivery | None: ...
    def list_deliveries(
        self, forge: str | None = None, status: DeliveryStatus | None = None, limit: int = 50
    ) -> list[Delivery]: ...
    def prune_deliveries(self, before: datetime) -> int: ...

    # -- idempotency keys of the trigger endpoint (api/routes/jobs.py)
    def create_run_once(self, run: NewRun, key: IdempotencyKey, now: datetime) -> IdempotentRun: ...
    def create_runs(
        self,
        items: Sequence[tuple[NewRun, IdempotencyKey | None]],
        now: datetime,
        checks: Sequence[RunCheck | None] | None = None,
    ) -> list[IdempotentRun]: ...
    def page_runs(
        self,
        *,
        schedule: str | None = None,
        status: RunStatus | None = None,
        template: str | None = None,
        trigger: RunTrigger | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[RunRecord]: ...

    # -- signed revisions and run provenance
    def signing_keys(self, revisions: Sequence[str]) -> dict[str, str | None]: ...

    # -- the notification outbox (engine/notifying.py)
    def schedule_notify(self, names: Sequence[str]) -> dict[str, tuple[Any, str | None]]: ...
    def defer_flush(self) -> None: ...
    def write_notifications(
        self, rows: Sequence[OutboxWrite], marks: Sequence[NotifyMark], now: datetime
    ) -> int: ...
    def claim_notifications(
        self, claimer: str, limit: int, claim_seconds: float, now: datetime
    ) -> list[OutboxRecord]: ...
    def mark_notification_sent(self, row_id: int, claimer: str, now: datetime) -> bool: ...
    def retry_notification(
        self,
        row_id: int,
        claimer: str,
        error: str,
        next_attempt_at: datetime | None,
        now: datetime,
    ) -> bool: ...
    def list_notifications(
        self, status: OutboxStatus | None = None, limit: int = 50
    ) -> list[OutboxRecord]: ...
    def notification_counts(self) -> dict[str, int]: ...


# --------------------------------------------------------------------------------------------
# forge webhook deliveries (engine/webhooks.py)

DeliveryStatus = Literal["pending", "processing", "done", "ignored", "failed"]
"""What became of a forge delivery: ``pending`` waits for the daemon (a review), ``processing``
is claimed by one replica, ``done`` did its work (a push requested a pass, a review was
recorded), ``ignored`` did nothing on purpose (another repository, a branch not tracked, an
event without meaning here; the detail says why), ``failed`` could not be done (the detail
says why)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One forge webhook delivery, recorded once per ``(forge, delivery_id)``.

    ``facts`` are what the payload said that matters here (event, pull request number, head
    SHA, reviewed commit, reviewer and author logins, review state, base branch): never the raw
    body, never a header value."""

    forge: str
    delivery_id: str
    event: str
    received_at: datetime
    status: DeliveryStatus
    facts: Mapping[str, JsonValue]
    detail: str | None = None
    processed_at: datetime | None = None


# --------------------------------------------------------------------------------------------
# records of the trigger endpoint's idempotency keys


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A client's ``Idempotency-Key`` for :meth:`StateStore.create_run_once`: one per API key
    (``api_key`` is the key's name, never its secret), remembered ``window_seconds``."""

    api_key: str
    key: str
    body_hash: str
    """A hash of the request as the client sent it: the same key with another body is refused."""
    window_seconds: float = 24 * 3600


@dataclass(frozen=True, slots=True)
class RunCheck:
    """What a triggered run was checked against, verified again by
    :meth:`StateStore.create_runs` in the transaction that writes it: the applied state's
    ``serial`` (its template, prompts and inventory) and the API key, by its hash (the key was
    not revoked since). A request can then check against what it read earlier (a cache) and
    still never write a run that the state in force at the commit would refuse."""

    serial: int
    key_hash: str


class ChecksFailed(StateConflict):
    """Some items of :meth:`StateStore.create_runs` failed their :class:`RunCheck`; nothing
    was written. ``failed`` maps each one's index to why: ``stale`` (the applied state moved:
    check again) or ``revoked`` (the key is no longer active)."""

    def __init__(self, failed: Mapping[int, Literal["stale", "revoked"]]) -> None:
        self.failed = dict(failed)
        super().__init__(
            f"{len(self.failed)} run(s) were checked against an older state or a revoked key"
        )


@dataclass(frozen=True, slots=True)
class IdempotentRun:
    """What :meth:`StateStore.create_run_once` did: ``created`` the run, ``replayed`` the key
    (``run`` is the one it created first), or found the key used with another body
    (``conflict``; ``run`` is that first run)."""

    outcome: Literal["created", "replayed", "conflict"]
    run: RunRecord


# --------------------------------------------------------------------------------------------
# URLs

_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*(?P<at>@)", re.I)
_PASSWORD_KV = re.compile(r"(?P<head>\bpassword\s*=\s*)('[^']*'|[^\s&]+)", re.I)


def redact(text: str) -> str:
    """``text`` with any password in a URL (``user:pw@``) or ``password=`` pair removed."""
    text = _PASSWORD_IN_URL.sub(r"\g<head>***\g<at>", text)
    return _PASSWORD_KV.sub(r"\g<head>***", text)


DEFAULT_LOG_CAP = 10 * 1024 * 1024
DEFAULT_LOCK_TIMEOUT = 30.0


def check_literal(value: str, allowed: Any, what: str) -> None:
    """Raise ValueError unless ``value`` is one of the members of a ``Literal`` type."""
    members = get_args(allowed)
    if value not in members:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(members)}")
