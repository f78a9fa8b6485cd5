"""The queries and the schema shared by both SQL backends. No database driver is imported here.

:class:`SqlStore` implements :class:`~reconciler.stores.base.StateStore` once, in SQL that both
SQLite (>= 3.35) and PostgreSQL (>= 12) understand, on top of a tiny transaction seam
(:class:`Tx`) that each backend provides: :mod:`reconciler.stores.sqlite` and
:mod:`reconciler.stores.postgres` own their driver, connections, locking, type mapping and error
translation, and nothing else. One set of queries means one behaviour to test.

Transaction modes a backend must provide (``_tx(mode)``):

``read``
    a plain read.
``write``
    a write transaction (SQLite: ``BEGIN IMMEDIATE``, so writers queue on the busy timeout;
    PostgreSQL: a normal transaction; row locks where needed).
``state``
    a write that changes the applied objects and bumps the serial: on PostgreSQL the ``rc_meta``
    row is locked with ``FOR UPDATE`` (``_lock_row``) under a bounded ``lock_timeout``.
``migrate``
    schema changes, serialised between processes (SQLite: ``BEGIN EXCLUSIVE``; PostgreSQL: a
    transaction-scoped advisory lock).
"""

from __future__ import annotations

import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, Protocol, cast, get_args

from reconciler.errors import StateConflict, StateCorrupt, StateTooNew, UsageError
from reconciler.model.firing import FiringSpec, firing_spec
from reconciler.stores.base import (
    FINAL_STATUSES,
    SENSITIVE_PLACEHOLDER,
    Activity,
    ApiKey,
    Approval,
    ChecksFailed,
    Cursor,
    Decision,
    DecisionWrite,
    Delivery,
    DeliveryStatus,
    DriftRecord,
    DriftState,
    FireBatch,
    FireResult,
    FiringHead,
    HeartbeatAnswer,
    HistoryEntry,
    Hold,
    HostResult,
    IdempotencyKey,
    IdempotentRun,
    JsonValue,
    Lease,
    LogSlice,
    NewRun,
    NotifyEventName,
    NotifyMark,
    ObjectRecord,
    ObjectState,
    ObjectWrite,
    OutboxRecord,
    OutboxStatus,
    OutboxWrite,
    Recheck,
    ReconcileAttempt,
    Replica,
    RunCheck,
    RunId,
    RunRecord,
    RunStatus,
    RunTrigger,
    Scope,
    Settle,
    SkipReason,
    SlotEntry,
    StateInfo,
    StateStore,
    SystemJob,
    as_utc,
    check_literal,
    hash_secret,
    replica_of,
)

PRODUCT = "reconciler"
Mode = Literal["read", "write", "state", "migrate"]


JsonKind = Literal["text", "int", "bool", "ts"]
"""The type of a value of the JSON rows of :meth:`SqlStore._json_insert`."""


class Tx(Protocol):
    """One open transaction. SQL uses ``?`` placeholders; the backend adapts them."""

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


@dataclass(frozen=True)
class Migration:
    """One schema step. ``ddl`` uses ``{ID}`` ``{TS}`` ``{BOOL}`` ``{BLOB}`` ``{INT}`` for the
    types that differ between the dialects."""

    version: int
    description: str
    ddl: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "applied state: meta header with serial, applied objects, revision history",
        (
            """CREATE TABLE rc_meta (
                id {INT} PRIMARY KEY CHECK (id = 1),
                product TEXT NOT NULL,
                schema_version {INT} NOT NULL,
                serial {INT} NOT NULL,
                revision TEXT,
                applied_at {TS},
                created_at {TS} NOT NULL)""",
            """CREATE TABLE rc_migrations (
                version {INT} PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at {TS} NOT NULL)""",
            """CREATE TABLE rc_objects (
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                content_hash TEXT NOT NULL,
                body TEXT NOT NULL,
                revision TEXT,
                managed {BOOL} NOT NULL,
                state TEXT,
                state_reason TEXT,
                serial {INT} NOT NULL,
                created_at {TS} NOT NULL,
                updated_at {TS} NOT NULL,
                PRIMARY KEY (kind, name))""",
            """CREATE TABLE rc_revisions (
                serial {INT} PRIMARY KEY,
                revision TEXT,
                applied_at {TS} NOT NULL,
                created {INT} NOT NULL,
                updated {INT} NOT NULL,
                deleted {INT} NOT NULL,
                message TEXT)""",
        ),
    ),
    Migration(
        2,
        "execution: slot ledger, runs, host results, run logs, drift, approvals, API keys, leases",
        (
            """CREATE TABLE rc_runs (
                id {ID},
                schedule TEXT,
                template TEXT NOT NULL,
                trigger_kind TEXT NOT NULL,
                slot {TS},
                status TEXT NOT NULL,
                commit_sha TEXT,
                created_at {TS} NOT NULL,
                not_before {TS},
                started_at {TS},
                finished_at {TS},
                variables TEXT NOT NULL,
                targets TEXT NOT NULL,
                simulate {BOOL} NOT NULL,
                message TEXT,
                requested_by TEXT,
                retry_of {INT} REFERENCES rc_runs (id),
                worker TEXT,
                lease_expires {TS},
                log_size {INT} NOT NULL DEFAULT 0,
                log_truncated {BOOL} NOT NULL DEFAULT FALSE)""",
            "CREATE INDEX rc_runs_queued ON rc_runs (id) WHERE status = 'queued'",
            "CREATE INDEX rc_runs_running ON rc_runs (lease_expires) WHERE status = 'running'",
            "CREATE INDEX rc_runs_created ON rc_runs (created_at, id)",
            "CREATE INDEX rc_runs_schedule ON rc_runs (schedule, created_at, id)",
            """CREATE TABLE rc_slots (
                schedule TEXT NOT NULL,
                slot {TS} NOT NULL,
                run_id {INT} REFERENCES rc_runs (id),
                skip_reason TEXT,
                detail TEXT,
                recorded_at {TS} NOT NULL,
                PRIMARY KEY (schedule, slot),
                CHECK ((run_id IS NULL) <> (skip_reason IS NULL)))""",
            """CREATE TABLE rc_host_results (
                run_id {INT} NOT NULL REFERENCES rc_runs (id),
                server TEXT NOT NULL,
                status TEXT NOT NULL,
                ok {INT} NOT NULL, changed {INT} NOT NULL, failed {INT} NOT NULL,
                unreachable {INT} NOT NULL, skipped {INT} NOT NULL, drifted {INT} NOT NULL,
                PRIMARY KEY (run_id, server))""",
            """CREATE TABLE rc_run_logs (
                run_id {INT} NOT NULL REFERENCES rc_runs (id),
                pos {INT} NOT NULL,
                size {INT} NOT NULL,
                data {BLOB} NOT NULL,
                PRIMARY KEY (run_id, pos))""",
            """CREATE TABLE rc_drift (
                id {ID},
                server TEXT NOT NULL,
                template TEXT NOT NULL,
                run_id {INT} REFERENCES rc_runs (id),
                state TEXT NOT NULL,
                details TEXT NOT NULL,
                at {TS} NOT NULL)""",
            "CREATE INDEX rc_drift_key ON rc_drift (server, template, at)",
            """CREATE TABLE rc_approvals (
                schedule TEXT NOT NULL,
                content_hash TEXT NOT NULL,
                user_name TEXT NOT NULL,
                decision TEXT NOT NULL,
                at {TS} NOT NULL,
                reason TEXT,
                PRIMARY KEY (schedule, content_hash, user_name))""",
            """CREATE TABLE rc_api_keys (
                name TEXT PRIMARY KEY,
                key_hash TEXT NOT NULL UNIQUE,
                scopes TEXT NOT NULL,
                templates TEXT NOT NULL,
                user_name TEXT,
                created_at {TS} NOT NULL,
                revoked_at {TS})""",
            """CREATE TABLE rc_leases (
                name TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                expires {TS} NOT NULL)""",
        ),
    ),
    Migration(
        3,
        "the daemon: firing cursors, slot ranges, replicas, reconcile attempts, cancel requests",
        (
            "ALTER TABLE rc_slots ADD COLUMN until_slot {TS}",
            "ALTER TABLE rc_slots ADD COLUMN slot_count {INT} NOT NULL DEFAULT 1",
            "ALTER TABLE rc_runs ADD COLUMN wait_for {INT}",
            "ALTER TABLE rc_runs ADD COLUMN cancel_requested {BOOL} NOT NULL DEFAULT FALSE",
            "ALTER TABLE rc_runs ADD COLUMN cancel_by TEXT",
            "ALTER TABLE rc_runs ADD COLUMN untrusted TEXT NOT NULL DEFAULT '[]'",
            """CREATE TABLE rc_cursors (
                schedule TEXT PRIMARY KEY,
                last_slot {TS} NOT NULL,
                when_hash TEXT NOT NULL,
                updated_at {TS} NOT NULL)""",
            """CREATE TABLE rc_replicas (
                id TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                pid {INT} NOT NULL,
                workers {INT} NOT NULL,
                started {TS} NOT NULL,
                seen {TS} NOT NULL)""",
            """CREATE TABLE rc_attempts (
                id {INT} PRIMARY KEY CHECK (id = 1),
                revision TEXT,
                at {TS} NOT NULL,
                ok {BOOL} NOT NULL,
                diagnostics TEXT NOT NULL,
                message TEXT)""",
            "CREATE INDEX rc_runs_active ON rc_runs (schedule, status) "
            "WHERE status IN ('queued', 'running')",
            """CREATE TABLE rc_system (
                name TEXT PRIMARY KEY,
                every_seconds {INT} NOT NULL,
                last_at {TS} NOT NULL,
                detail TEXT)""",
        ),
    ),
    Migration(
        4,
        "the API: approval sources, change authors, webhook deliveries, idempotency keys, "
        "signed revisions, run provenance",
        (
            # where a decision came from (cli, api, github, gitlab, gitea) and the commit it
            # was given for
            "ALTER TABLE rc_approvals ADD COLUMN via TEXT NOT NULL DEFAULT 'cli'",
            "ALTER TABLE rc_approvals ADD COLUMN revision TEXT",
            # the commit author e-mails of an object's applied content (JSON list): the
            # author of a change never counts as its approver
            "ALTER TABLE rc_objects ADD COLUMN authors TEXT NOT NULL DEFAULT '[]'",
            # the approval content hash a schedule's state was decided for (None: no approval)
            "ALTER TABLE rc_objects ADD COLUMN approval_hash TEXT",
            # the key that signed the applied revision (requireSignedCommits)
            "ALTER TABLE rc_meta ADD COLUMN signing_key TEXT",
            "ALTER TABLE rc_revisions ADD COLUMN signing_key TEXT",
            # commit, signing key, approvers, content hash, replica: JSON object
            "ALTER TABLE rc_runs ADD COLUMN provenance TEXT NOT NULL DEFAULT '{{}}'",
            """CREATE TABLE rc_deliveries (
                forge TEXT NOT NULL,
                delivery_id TEXT NOT NULL,
                event TEXT NOT NULL,
                received_at {TS} NOT NULL,
                status TEXT NOT NULL,
                facts TEXT NOT NULL,
                detail TEXT,
                processed_at {TS},
                PRIMARY KEY (forge, delivery_id))""",
            "CREATE INDEX rc_deliveries_pending ON rc_deliveries (received_at) "
            "WHERE status = 'pending'",
            """CREATE TABLE rc_idempotency (
                api_key TEXT NOT NULL,
                idem_key TEXT NOT NULL,
                body_hash TEXT NOT NULL,
                run_id {INT} NOT NULL REFERENCES rc_runs (id),
                created_at {TS} NOT NULL,
                PRIMARY KEY (api_key, idem_key))""",
        ),
    ),
    Migration(
        5,
        "firing rows: what firing needs of each applied schedule, kept beside its body",
        (
            # one row per applied schedule whose body has the fields firing needs
            # (reconciler.model.firing.firing_spec), with the head of its rc_objects row:
            # written in the same transaction by apply_changes and set_object_state, so
            # start-up reads these short rows and no body
            """CREATE TABLE rc_firing (
                schedule TEXT PRIMARY KEY,
                serial {INT} NOT NULL,
                state TEXT,
                state_reason TEXT,
                revision TEXT,
                updated_at {TS} NOT NULL,
                when_spec TEXT NOT NULL,
                template TEXT NOT NULL,
                owner TEXT NOT NULL,
                misfire TEXT NOT NULL,
                misfire_window TEXT,
                overlap TEXT NOT NULL,
                fields_key TEXT NOT NULL,
                shape TEXT NOT NULL)""",
        ),
    ),
    Migration(
        6,
        "notifications: the outbox and the last notified fingerprints",
        (
            """CREATE TABLE rc_outbox (
                id {ID},
                delivery_id TEXT NOT NULL,
                event TEXT NOT NULL,
                channel TEXT NOT NULL,
                schedule TEXT,
                template TEXT,
                run_id {INT},
                payload TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts {INT} NOT NULL DEFAULT 0,
                next_attempt_at {TS} NOT NULL,
                last_error TEXT,
                claimed_by TEXT,
                claim_expires {TS},
                created_at {TS} NOT NULL,
                sent_at {TS})""",
            "CREATE INDEX rc_outbox_due ON rc_outbox (next_attempt_at, id) "
            "WHERE status IN ('pending', 'sending')",
            # the ones that gave up (the API, the dashboard); a new row is not in it, so
            # writing one costs the table and the due index only
            "CREATE INDEX rc_outbox_failed ON rc_outbox (id) WHERE status = 'failed'",
            """CREATE TABLE rc_notify_marks (
                mark_key TEXT PRIMARY KEY,
                fingerprint TEXT NOT NULL,
                updated_at {TS} NOT NULL)""",
        ),
    ),
    Migration(
        7,
        "start-up: the schedules without a firing row, the schedules that need approval",
        (
            # the applied schedules whose body lacks what firing needs (rc_firing has no row
            # for them): start-up reads their bodies, found here instead of by comparing all
            # of rc_objects with rc_firing; filled from the state when it is opened
            "CREATE TABLE rc_firing_bare (schedule TEXT PRIMARY KEY)",
            # the few schedules whose template requires approval (their runs' provenance)
            "CREATE INDEX rc_objects_approval ON rc_objects (name, approval_hash) "
            "WHERE kind = 'Schedule' AND approval_hash IS NOT NULL",
        ),
    ),
)
#: Migration numbers may have gaps (each area of the schema takes its own number): a state
#: records every migration it ran in ``rc_migrations``, and opening runs the ones it lacks, in
#: order, also one numbered below its ``schema_version`` (which is the highest one run).
LATEST_VERSION = max(m.version for m in MIGRATIONS)

_OBJ_COLS = (
    "kind, name, content_hash, body, revision, managed, state, state_reason, serial, "
    "created_at, updated_at, authors, approval_hash"
)
_RUN_COLS = (
    "id, schedule, template, trigger_kind, slot, status, commit_sha, created_at, not_before, "
    "started_at, finished_at, variables, targets, simulate, message, requested_by, retry_of, "
    "worker, lease_expires, log_size, log_truncated, untrusted, provenance"
)
#: The columns a new run is written with (:meth:`SqlStore._new_run_row` gives their values).
_NEW_RUN_COLS = (
    "schedule, template, trigger_kind, slot, status, commit_sha, created_at, not_before, "
    "variables, targets, simulate, message, requested_by, retry_of, wait_for, finished_at, "
    "untrusted, provenance"
)
_NEW_RUN_MARKS = ", ".join("?" * len(_NEW_RUN_COLS.split(",")))
#: The columns of a fired run of its own (JSON rows of ``_insert_fired_runs``) and those
#: shared by the runs of one schedule shape in a burst (bound once per group).
_OWN_RUN_COLS: tuple[tuple[str, JsonKind], ...] = (
    ("schedule", "text"),
    ("slot", "ts"),
    ("trigger_kind", "text"),
    ("status", "text"),
    ("message", "text"),
    ("wait_for", "int"),
    ("finished_at", "ts"),
)
_SHARED_RUN_COLS = (
    "template",
    "commit_sha",
    "not_before",
    "variables",
    "targets",
    "simulate",
    "requested_by",
    "retry_of",
    "untrusted",
    "provenance",
)
_SKIP_COLS: tuple[tuple[str, JsonKind], ...] = (
    ("schedule", "text"),
    ("slot", "ts"),
    ("skip_reason", "text"),
    ("detail", "text"),
    ("until_slot", "ts"),
    ("slot_count", "int"),
)
#: An apply that writes or deletes this many objects refreshes the planner's statistics.
ANALYZE_AFTER = 1000
#: Rows per statement of JSON rows (bounds the size of one parameter).
_JSON_CHUNK = 2000
_FIRING_COLS = (
    "schedule, serial, state, state_reason, revision, updated_at, when_spec, template, "
    "owner, misfire, misfire_window, overlap, fields_key, shape"
)
#: The schema version that has the firing rows (rc_firing).
_FIRING_SCHEMA = 5
#: From this schema on, ``rc_firing_bare`` lists the schedules that have no firing row.
_BARE_SCHEMA = 7
#: The columns of a firing row that schedules of one shape share (``shape`` is their digest).
_SHAPE_COLS = "when_spec, template, owner, misfire, misfire_window, overlap, fields_key"
_SLOT_COLS = "schedule, slot, run_id, skip_reason, detail, recorded_at, until_slot, slot_count"
#: Up to this many schedules, :meth:`SqlStore.schedule_activity` looks up only theirs (an
#: index range each); more (a burst) read every active run once.
_ACTIVITY_NAMES = 200
_HOST_COLS = "run_id, server, status, ok, changed, failed, unreachable, skipped, drifted"
_OUTBOX_COLS = (
    "id, delivery_id, event, channel, schedule, template, run_id, payload, status, attempts, "
    "next_attempt_at, last_error, claimed_by, claim_expires, created_at, sent_at"
)


class _SlotTaken(Exception):
    """Internal: the (schedule, slot) ledger row exists already; roll the run back."""


class _KeyTaken(Exception):
    """Internal: a concurrent request took the idempotency key; roll the run back."""


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _char_boundary(data: bytes, n: int) -> int:
    """The largest cut <= n that does not split a UTF-8 sequence."""
    while 0 < n < len(data) and (data[n] & 0xC0) == 0x80:
        n -= 1
    return n


class SqlStore(ABC):
    """The shared implementation of the state store port over a :class:`Tx` seam."""

    backend: Literal["sqlite", "postgresql"]
    _lock_row = ""  # PostgreSQL: " FOR UPDATE"
    #: PostgreSQL judges leases by the database's clock (``now()``), so clock skew between
    #: replicas cannot make one abandon another's live run; SQLite (one machine's file) by the
    #: instant the caller passes.
    _db_clock = False
    #: SQL for the database server's current instant, in the form instants are stored
    _server_now = "strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')"
    _skip_locked = ""  # PostgreSQL: " FOR UPDATE SKIP LOCKED"

    def __init__(self, *, lock_timeout: float, log_cap: int, readonly: bool = False) -> None:
        if log_cap < 0:
            raise ValueError("log_cap must not be negative")
        self.lock_timeout = lock_timeout
        self.log_cap = log_cap
        self.readonly = readonly
        """Opened for a caller that only reads: every write fails with StateUnavailable (the
        schema is still created or upgraded on open, where the backend can)."""
        self._schema_version = 0

    # -- what a backend provides

    @abstractmethod
    def _tx(self, mode: Mode) -> AbstractContextManager[Tx]: ...

    @abstractmethod
    def _location(self) -> str: ...

    @abstractmethod
    def _table_names(self, tx: Tx) -> set[str]:
        """Every table in the database (SQLite) or in the schema we use (PostgreSQL)."""

    @abstractmethod
    def _foreign_tables(self, tables: set[str]) -> list[str]:
        """Tables that show the database belongs to another application."""

    @abstractmethod
    def _type_map(self) -> dict[str, str]: ...

    @abstractmethod
    def close(self) -> None: ...

    def _ts(self, value: datetime) -> Any:
        """An aware instant as the database stores it (PostgreSQL: as is)."""
        return value

    #: See :meth:`defer_flush`.
    _deferred = False

    def defer_flush(self) -> None:
        """Let this connection's commits return before they are flushed to disk (SQLite:
        ``synchronous=NORMAL`` in WAL mode; PostgreSQL: ``synchronous_commit=off``). The
        firing loop's connection only: a slot it records is flushed by the next flushed commit
        of any connection, at the latest the claim of its run, because both databases flush
        their log in order (WAL frames; WAL records up to the committing LSN) and every
        other connection, the workers' claims included, flushes each commit. A power cut can
        then lose only slots whose runs no worker had claimed, and the daemon records them
        again after the restart: a run is still never executed twice. A crash of the process
        alone loses nothing either way."""
        self._deferred = True
        self._apply_deferred()

    @abstractmethod
    def _apply_deferred(self) -> None:
        """Make this connection's commits return before the flush (:meth:`defer_flush`)."""

    #: ``spec.notify`` and ``spec.template`` of a body (``rc_objects`` as ``o``), and the
    #: condition that leaves out a body that is not JSON (:meth:`schedule_notify`; PostgreSQL
    #: has none: such a body fails the query, and the caller falls back to reading it).
    _notify_expr = "json_extract(o.body, '$.spec.notify')"
    _template_expr = "json_extract(o.body, '$.spec.template')"
    _valid_body = " AND json_valid(o.body)"

    # -- many rows in one parameter: a burst writes thousands of rows, and binding each of
    # their values from Python (or adapting it, on PostgreSQL) cost more than the writes. The
    # rows go as one JSON array of arrays that the database unpacks (json_each, or
    # jsonb_array_elements); values shared by every row are bound once.

    #: The FROM clause over the JSON array parameter, its elements as ``j.value``.
    _json_rows = "json_each(?) AS j"

    def _json_col(self, index: int, kind: JsonKind) -> str:
        """The SQL of element ``index`` of each row, as a value of ``kind``."""
        return f"json_extract(j.value, '$[{index}]')"

    def _json_ts(self, stored: Any) -> Any:
        """An instant as :meth:`_ts` stores it, as it goes into the JSON rows."""
        return stored

    def _json_insert(
        self,
        tx: Tx,
        table: str,
        per_row: Sequence[tuple[str, JsonKind]],
        rows: Sequence[Sequence[Any]],
        shared: Sequence[tuple[str, Any]] = (),
        conflict: str = "",
        returning: str = "",
    ) -> list[tuple[Any, ...]]:
        """``INSERT INTO table`` the ``rows`` (values of the ``per_row`` columns, in order;
        instants as :meth:`_json_ts` gives them) with the ``shared`` column values, in one
        statement, with its ``ON CONFLICT`` clause (``conflict``); returns the ``returning``
        columns of the rows written (none without)."""
        if not rows:
            return []
        sql, params = self._json_insert_sql(table, per_row, rows, shared, conflict)
        if not returning:
            tx.run(sql, params)
            return []
        return tx.all(f"{sql} RETURNING {returning}", params)

    def _json_insert_sql(
        self,
        table: str,
        per_row: Sequence[tuple[str, JsonKind]],
        rows: Sequence[Sequence[Any]],
        shared: Sequence[tuple[str, Any]] = (),
        conflict: str = "",
    ) -> tuple[str, list[Any]]:
        """The statement of :meth:`_json_insert` and its parameters."""
        columns = [c for c, _ in per_row] + [c for c, _ in shared]
        values = [self._json_col(i, kind) for i, (_, kind) in enumerate(per_row)]
        values += ["?"] * len(shared)
        # WHERE true: SQLite's parser needs a WHERE before ON CONFLICT in an INSERT ... SELECT
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} "
            f"FROM {self._json_rows} WHERE true {conflict}"
        )
        return sql, [v for _, v in shared] + [json.dumps(rows, separators=(",", ":"))]

    def _insert_new_runs(
        self, tx: Tx, sql: str, params: Sequence[Any], keys: Sequence[tuple[str, Any]]
    ) -> list[int]:
        """Run ``sql``, an INSERT of runs from JSON rows (:meth:`_json_insert_sql`) whose
        (schedule, slot as stored) are ``keys``; returns their new ids, in that order."""
        rows = tx.all(f"{sql} RETURNING id, schedule, slot", params)
        # the slot as returned is the value written (SQLite: the same text; PostgreSQL: an
        # equal instant), so it keys the new ids without parsing
        ids = {(r[1], r[2]): int(r[0]) for r in rows}
        return [ids[key] for key in keys]

    def _ids_in(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        """A condition on ``column`` that holds for exactly ``ids`` (the runs one statement
        wrote), with its parameters."""
        return f"{column} = ANY(?)", [list(ids)]

    # -- run locks: how a backend may tell that the process running a run is gone. SQLite
    # holds a lock per claimed run until the run is finished or the store closed; PostgreSQL
    # has none (its connections come and go), so only the lease tells there.

    def _hold_run(self, run_id: int) -> bool:
        """Take the lock of a run this store is claiming; True when it was not held yet."""
        return False

    def _release_run(self, run_id: int) -> None:
        """Release the lock of a run this store finished (or gave up claiming)."""
        return None

    def _process_gone(self, run_id: int, worker: str) -> bool:
        """True only when the process that claimed ``run_id`` is known to have ended."""
        return False

    def _lease_until(self, now: datetime, seconds: float) -> tuple[str, Any]:
        """SQL for "``seconds`` from now" and its parameter."""
        if self._db_clock:
            return "now() + make_interval(secs => ?)", float(seconds)
        return "?", self._ts(as_utc(now, "now") + timedelta(seconds=seconds))

    def _now_sql(self, now: datetime) -> tuple[str, list[Any]]:
        """SQL for "now" in lease comparisons and its parameters."""
        if self._db_clock:
            return "now()", []
        return "?", [self._ts(as_utc(now, "now"))]

    # -- lifecycle

    def __enter__(self) -> StateStore:
        return cast(StateStore, self)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self, target: int | None = None) -> None:
        """Create or upgrade the schema up to ``target`` (default: the latest), in one
        transaction; refuse foreign or newer states. A state that is up to date is only read
        (opening never waits for a writer)."""
        target = LATEST_VERSION if target is None else target
        with self._tx("read") as tx:
            current = self._schema_of(tx)
            pending = self._pending_migrations(tx, current, target)
        if pending:
            with self._tx("migrate") as tx:
                current = self._schema_of(tx)
                types = self._type_map()
                now = self._server_now  # the database's clock: the store never reads the time
                for m in self._pending_migrations(tx, current, target):
                    for ddl in m.ddl:
                        tx.run(ddl.format(**types))
                    if m.version == 1:
                        tx.run(
                            "INSERT INTO rc_meta (id, product, schema_version, serial, "
                            f"created_at) VALUES (1, ?, 0, 0, {now})",
                            (PRODUCT,),
                        )
                    if m.version == 5:  # the firing rows of the schedules applied
                        self._backfill_firing(tx)
                    if m.version in (5, _BARE_SCHEMA):  # whichever of the two runs last
                        self._backfill_bare(tx)
                    tx.run(
                        "INSERT INTO rc_migrations (version, description, applied_at) "
                        f"VALUES (?, ?, {now})",
                        (m.version, m.description),
                    )
                    current = max(current, m.version)
                    tx.run("UPDATE rc_meta SET schema_version = ? WHERE id = 1", (current,))
        self._schema_version = current

    def _pending_migrations(self, tx: Tx, current: int, target: int) -> list[Migration]:
        """The migrations up to ``target`` that the state has not run, in order (a state at
        schema 6 still lacks a migration 5 added later: see :data:`LATEST_VERSION`)."""
        if current == 0:
            return [m for m in MIGRATIONS if m.version <= target]
        done = {int(r[0]) for r in tx.all("SELECT version FROM rc_migrations")}
        return [m for m in MIGRATIONS if m.version <= target and m.version not in done]

    def _schema_of(self, tx: Tx) -> int:
        """The schema version of the state (0: empty); raises for foreign or newer states."""
        where = self._location()
        tables = self._table_names(tx)
        if "rc_meta" not in tables:
            foreign = self._foreign_tables(tables)
            if foreign:
                raise StateCorrupt(
                    f"{where} is not a reconciler state: it holds tables of another "
                    f"application ({', '.join(sorted(foreign)[:5])})"
                )
            return 0
        row = tx.one("SELECT product, schema_version FROM rc_meta WHERE id = 1")
        if row is None or row[0] != PRODUCT or not isinstance(row[1], int):
            raise StateCorrupt(
                f"{where} is not a reconciler state: its header is missing or belongs to "
                "another product"
            )
        if row[1] > LATEST_VERSION:
            raise StateTooNew(
                f"{where} was written by a newer version of reconciler (state schema "
                f"{row[1]}; this version knows up to {LATEST_VERSION}); upgrade reconciler to "
                "use it"
            )
        return int(row[1])

    # -- conversions

    def _damaged(self, what: str, value: Any, expected: str) -> StateCorrupt:
        """A row edited by hand (or damaged): one line naming the row and the bad value."""
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return StateCorrupt(
            f"the state {self._location()} is damaged: {what} holds {shown}, which is not "
            f"{expected}; restore the state from a backup, or apply again to a new one"
        )

    def _dt(self, value: Any, what: str = "a row") -> datetime:
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise self._damaged(what, value, "an instant with its UTC offset") from None
            if parsed.tzinfo is UTC:  # what this store writes
                return parsed
            if parsed.utcoffset() is None:
                raise self._damaged(what, value, "an instant with its UTC offset")
            return parsed.astimezone(UTC)
        if isinstance(value, datetime):
            return value if value.tzinfo is UTC else value.astimezone(UTC)
        raise self._damaged(what, value, "an instant with its UTC offset")

    def _odt(self, value: Any, what: str = "a row") -> datetime | None:
        return None if value is None else self._dt(value, what)

    def _json_of(self, value: Any, what: str, kind: type = dict) -> Any:
        try:
            data = json.loads(value)
        except (TypeError, ValueError):
            data = None
        if not isinstance(data, kind):
            raise self._damaged(what, value, f"a JSON {'object' if kind is dict else 'list'}")
        return data

    def _object(self, r: tuple[Any, ...]) -> ObjectRecord:
        what = f'the applied {r[0]} "{r[1]}"'
        return ObjectRecord(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            bool(r[5]),
            r[6],
            r[7],
            r[8],
            self._dt(r[9], what),
            self._dt(r[10], what),
            tuple(str(a) for a in self._json_of(r[11], what + " authors", list)),
            r[12],
        )

    def _run(self, r: tuple[Any, ...], hosts: tuple[HostResult, ...] = ()) -> RunRecord:
        what = f"run {r[0]}"

        def odt(value: Any) -> datetime | None:
            return self._odt(value, what)

        return RunRecord(
            id=RunId(r[0]),
            schedule=r[1],
            template=r[2],
            trigger=r[3],
            slot=odt(r[4]),
            status=r[5],
            commit=r[6],
            created_at=self._dt(r[7], what),
            not_before=odt(r[8]),
            started_at=odt(r[9]),
            finished_at=odt(r[10]),
            variables=self._json_of(r[11], what),
            targets=self._json_of(r[12], what),
            simulate=bool(r[13]),
            message=r[14],
            requested_by=r[15],
            retry_of=None if r[16] is None else RunId(r[16]),
            worker=r[17],
            lease_expires=odt(r[18]),
            log_size=r[19],
            log_truncated=bool(r[20]),
            untrusted=tuple(self._json_of(r[21], what, list)),
            hosts=hosts,
            provenance=self._json_of(r[22], what + " provenance"),
        )

    def _with_hosts(self, tx: Tx, rows: list[tuple[Any, ...]]) -> list[RunRecord]:
        if not rows:
            return []
        ids = [r[0] for r in rows]
        hosts: dict[int, list[HostResult]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for h in tx.all(
                f"SELECT {_HOST_COLS} FROM rc_host_results WHERE run_id IN ({marks}) "
                "ORDER BY run_id, server",
                chunk,
            ):
                hosts.setdefault(h[0], []).append(HostResult(*h[1:]))
        return [self._run(r, tuple(hosts.get(r[0], ()))) for r in rows]

    # -- header

    def info(self) -> StateInfo:
        with self._tx("read") as tx:
            # a state opened at an older schema (tests of the upgrade) has no signing_key yet
            key = "signing_key" if self._schema_version >= 4 else "NULL"
            row = tx.one(f"SELECT serial, revision, applied_at, schema_version, {key} FROM rc_meta")
        if row is None:
            raise StateCorrupt(f"{self._location()} is not a reconciler state: no header row")
        return StateInfo(
            serial=row[0],
            revision=row[1],
            applied_at=self._odt(row[2], "rc_meta.applied_at"),
            schema_version=row[3],
            backend=self.backend,
            location=self._location(),
            signing_key=row[4],
        )

    def serial(self) -> int:
        return self.info().serial

    # -- applied objects

    def get_object(self, kind: str, name: str) -> ObjectRecord | None:
        """One applied object; its body is checked to be a JSON object (StateCorrupt naming
        the object when it is not). Listings leave that to their callers, which parse the
        bodies anyway: checking 100,000 of them here would double the time of a listing."""
        with self._tx("read") as tx:
            row = tx.one(
                f"SELECT {_OBJ_COLS} FROM rc_objects WHERE kind = ? AND name = ?", (kind, name)
            )
        if row is None:
            return None
        self._json_of(row[3], f'the applied {row[0]} "{row[1]}"')
        return self._object(row)

    def list_objects(self, kind: str | None = None) -> list[ObjectRecord]:
        with self._tx("read") as tx:
            if kind is None:
                rows = tx.all(f"SELECT {_OBJ_COLS} FROM rc_objects ORDER BY kind, name")
            else:
                rows = tx.all(
                    f"SELECT {_OBJ_COLS} FROM rc_objects WHERE kind = ? ORDER BY name", (kind,)
                )
        return [self._object(r) for r in rows]

    def list_object_heads(self, kind: str | None = None) -> list[ObjectRecord]:
        """Like :meth:`list_objects` with empty bodies: cheap for listing and planning."""
        cols = _OBJ_COLS.replace("body,", "'' AS body,")
        with self._tx("read") as tx:
            if kind is None:
                rows = tx.all(f"SELECT {cols} FROM rc_objects ORDER BY kind, name")
            else:
                rows = tx.all(
                    f"SELECT {cols} FROM rc_objects WHERE kind = ? ORDER BY name", (kind,)
                )
        return [self._object(r) for r in rows]

    def _lock_serial(self, tx: Tx, expected: int | None) -> int:
        row = tx.one(f"SELECT serial FROM rc_meta WHERE id = 1{self._lock_row}")
        if row is None:
            raise StateCorrupt(f"{self._location()} is not a reconciler state: no header row")
        serial = int(row[0])
        if expected is not None and serial != expected:
            raise StateConflict(
                f"the state changed since the plan was made (serial {expected}, now {serial}); "
                "make a new plan"
            )
        return serial

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
    ) -> int:
        """Write ``upserts`` and ``deletes`` in one transaction if the serial is still
        ``expected_serial``; return the new serial. Applying no change for the revision already
        applied changes nothing (the serial stays). ``signing_key``: the key that signed
        ``revision`` (``requireSignedCommits``), recorded with it in the header and history.
        ``notifications`` (a schedule now awaiting approval) go to the outbox in the same
        transaction. ``counts``: the (created, updated, deleted) the history records, as the
        plan's summary counts them; without it they are counted from the writes, leaving out
        the reconciler's own objects (kinds starting with ``_``)."""
        now = as_utc(now, "now")
        keys = [(u.kind, u.name) for u in upserts]
        if len(set(keys)) != len(keys):
            raise ValueError("apply_changes got the same object twice in upserts")
        if set(keys) & {(k, n) for k, n in deletes}:
            raise ValueError("apply_changes got an object both to write and to delete")
        for u in upserts:
            if u.state is not None:
                check_literal(u.state, ObjectState, "object state")
        ts = self._ts(now)
        with self._tx("state") as tx:
            serial = self._lock_serial(tx, expected_serial)
            if not upserts and not deletes:
                row = tx.one("SELECT revision FROM rc_meta WHERE id = 1")
                if row is not None and row[0] == revision:
                    return serial
            new = serial + 1
            kinds = sorted({k for k, _ in keys} | {k for k, _ in deletes})
            existing: set[tuple[str, str]] = set()
            if kinds:
                marks = ",".join("?" * len(kinds))
                existing = {
                    (r[0], r[1])
                    for r in tx.all(
                        f"SELECT kind, name FROM rc_objects WHERE kind IN ({marks})", kinds
                    )
                }
            if upserts:
                tx.many(
                    f"INSERT INTO rc_objects ({_OBJ_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (kind, name) DO UPDATE SET "
                    "content_hash = excluded.content_hash, body = excluded.body, "
                    "revision = excluded.revision, managed = excluded.managed, "
                    "state = excluded.state, state_reason = excluded.state_reason, "
                    "serial = excluded.serial, updated_at = excluded.updated_at, "
                    "authors = excluded.authors, approval_hash = excluded.approval_hash",
                    [
                        (
                            u.kind,
                            u.name,
                            u.content_hash,
                            u.body,
                            revision,
                            u.managed,
                            u.state,
                            u.state_reason,
                            new,
                            ts,
                            ts,
                            json.dumps(sorted(u.authors)),
                            u.approval_hash,
                        )
                        for u in upserts
                    ],
                )
            gone = [d for d in deletes if tuple(d) in existing]
            if gone:
                tx.many("DELETE FROM rc_objects WHERE kind = ? AND name = ?", gone)
            self._write_firing(
                tx, upserts, [n for k, n in gone if k == "Schedule"], new, revision, ts
            )
            if counts is None:  # the repository's documents, not the reconciler's own objects
                docs = [k for k in keys if not k[0].startswith("_")]
                created = sum(1 for k in docs if k not in existing)
                removed = sum(1 for k, _ in gone if not k.startswith("_"))
                counts = (created, len(docs) - created, removed)
            tx.run(
                "INSERT INTO rc_revisions (serial, revision, applied_at, created, updated, "
                "deleted, message, signing_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (new, revision, ts, *counts, message, signing_key),
            )
            tx.run(
                "UPDATE rc_meta SET serial = ?, revision = ?, applied_at = ?, signing_key = ? "
                "WHERE id = 1",
                (new, revision, ts, signing_key),
            )
            if notifications:
                self._write_outbox(tx, notifications, (), now)
        if len(upserts) + len(deletes) >= ANALYZE_AFTER:
            self._refresh_statistics(("rc_objects", "rc_firing"))
        return new

    @abstractmethod
    def _refresh_statistics(self, tables: Sequence[str]) -> None:
        """Tell the query planner what is in ``tables`` after a large write (autovacuum may
        be off or a minute late, and a planner that believes a table of 100,000 schedules to
        be small scans it for every lookup by name). A failure is only logged: the write is
        committed."""

    def set_object_state(
        self,
        kind: str,
        name: str,
        state: ObjectState,
        reason: str | None,
        now: datetime,
        expected_serial: int | None = None,
    ) -> int:
        """Change an applied object's state (approve, deny, disable); bumps the serial."""
        check_literal(state, ObjectState, "object state")
        ts = self._ts(as_utc(now, "now"))
        with self._tx("state") as tx:
            new = self._lock_serial(tx, expected_serial) + 1
            n = tx.run(
                "UPDATE rc_objects SET state = ?, state_reason = ?, serial = ?, updated_at = ? "
                "WHERE kind = ? AND name = ?",
                (state, reason, new, ts, kind, name),
            )
            if n != 1:
                raise UsageError(f"there is no applied {kind} named {name!r}")
            if kind == "Schedule" and self._schema_version >= _FIRING_SCHEMA:
                tx.run(
                    "UPDATE rc_firing SET state = ?, state_reason = ?, serial = ?, "
                    "updated_at = ? WHERE schedule = ?",
                    (state, reason, new, ts, name),
                )
            tx.run("UPDATE rc_meta SET serial = ? WHERE id = 1", (new,))
        return new

    def history(self, limit: int = 50) -> list[HistoryEntry]:
        with self._tx("read") as tx:
            rows = tx.all(
                "SELECT serial, revision, applied_at, created, updated, deleted, message, "
                "signing_key FROM rc_revisions ORDER BY serial DESC LIMIT ?",
                (limit,),
            )
        return [
            HistoryEntry(
                r[0], r[1], self._dt(r[2], f"rc_revisions row {r[0]}"), r[3], r[4], r[5], r[6], r[7]
            )
            for r in rows
        ]

    # -- slot ledger

    def skip_slot(
        self, schedule: str, slot: datetime, reason: SkipReason, now: datetime, detail: str | None
    ) -> bool:
        """Record that ``slot`` was skipped; False when the slot is already in the ledger."""
        if not reason:
            raise ValueError("a skipped slot needs a reason")
        with self._tx("write") as tx:
            n = tx.run(
                "INSERT INTO rc_slots (schedule, slot, run_id, skip_reason, detail, recorded_at) "
                "VALUES (?, ?, NULL, ?, ?, ?) ON CONFLICT (schedule, slot) DO NOTHING",
                (
                    schedule,
                    self._ts(as_utc(slot, "slot")),
                    reason,
                    detail,
                    self._ts(as_utc(now, "now")),
                ),
            )
        return n == 1

    def _slot(self, r: tuple[Any, ...]) -> SlotEntry:
        return SlotEntry(
            r[0],
            self._dt(r[1]),
            None if r[2] is None else RunId(r[2]),
            r[3],
            r[4],
            self._dt(r[5]),
            self._odt(r[6]),
            int(r[7]),
        )

    def get_slot(self, schedule: str, slot: datetime) -> SlotEntry | None:
        with self._tx("read") as tx:
            row = tx.one(
                f"SELECT {_SLOT_COLS} FROM rc_slots WHERE schedule = ? AND slot = ?",
                (schedule, self._ts(as_utc(slot, "slot"))),
            )
        return None if row is None else self._slot(row)

    def list_slots(
        self, schedule: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[SlotEntry]:
        """The ledger of one schedule (or of all), newest slot first. ``since`` also keeps a
        range entry whose last slot is at or after it."""
        sql = f"SELECT {_SLOT_COLS} FROM rc_slots WHERE 1 = 1"
        params: list[Any] = []
        if schedule is not None:
            sql += " AND schedule = ?"
            params.append(schedule)
        if since is not None:
            sql += " AND COALESCE(until_slot, slot) >= ?"
            params.append(self._ts(as_utc(since, "since")))
        with self._tx("read") as tx:
            rows = tx.all(sql + " ORDER BY slot DESC, schedule LIMIT ?", [*params, limit])
        return [self._slot(r) for r in rows]

    # -- runs

    def create_run(self, run: NewRun, now: datetime) -> RunRecord | None:
        """Enqueue a run. A run for a schedule slot (trigger ``schedule`` or ``catch-up``)
        takes the slot in the ledger in the same transaction; if the slot is taken already,
        nothing is written and None is returned: at most once per slot."""
        ts = self._ts(as_utc(now, "now"))
        try:
            with self._tx("write") as tx:
                run_id = self._insert_run(tx, run, ts, now)
                r = tx.one(f"SELECT {_RUN_COLS} FROM rc_runs WHERE id = ?", (run_id,))
                assert r is not None
        except _SlotTaken:
            return None
        return self._run(r)

    def _new_run_row(self, run: NewRun, ts: Any) -> list[Any]:
        """The values of ``_NEW_RUN_COLS`` for ``run``, created at ``ts`` (the firing path
        converts a burst's shared values once: :class:`_RowMemo`)."""
        provenance = _json(dict(run.provenance))
        return [
            run.schedule,
            run.template,
            run.trigger,
            None if run.slot is None else self._ts(as_utc(run.slot, "slot")),
            run.status,
            run.commit,
            ts,
            None if run.not_before is None else self._ts(as_utc(run.not_before, "not_before")),
            _json(_stored_variables(run)),
            _json(dict(run.targets)),
            run.simulate,
            run.message,
            run.requested_by,
            run.retry_of,
            run.wait_for,
            ts if run.status != "queued" else None,
            _json(sorted(run.untrusted)),
            provenance,
        ]

    def _insert_run(self, tx: Tx, run: NewRun, ts: Any, now: datetime) -> int:
        """Insert ``run`` (and its ledger row when it is for a slot); raises _SlotTaken. With
        ``claim_by`` it is inserted already claimed (running, leased), so no worker of a daemon
        can take a run that the submitting process executes itself."""
        check_literal(run.trigger, RunTrigger, "trigger")
        takes_slot = run.trigger in ("schedule", "catch-up")
        if takes_slot and (run.schedule is None or run.slot is None):
            raise ValueError(f"a run with trigger {run.trigger!r} needs a schedule and a slot")
        slot = None if run.slot is None else self._ts(as_utc(run.slot, "slot"))
        row = tx.one(
            f"INSERT INTO rc_runs ({_NEW_RUN_COLS}) VALUES ({_NEW_RUN_MARKS}) RETURNING id",
            self._new_run_row(run, ts),
        )
        assert row is not None
        run_id = int(row[0])
        if takes_slot:
            n = tx.run(
                "INSERT INTO rc_slots (schedule, slot, run_id, skip_reason, detail, "
                "recorded_at) VALUES (?, ?, ?, NULL, NULL, ?) "
                "ON CONFLICT (schedule, slot) DO NOTHING",
                (run.schedule, slot, run_id, ts),
            )
            if n != 1:
                raise _SlotTaken
        if run.claim_by is not None and run.status == "queued":
            until, until_p = self._lease_until(now, run.claim_seconds)
            tx.run(
                f"UPDATE rc_runs SET status = 'running', worker = ?, lease_expires = {until}, "
                "started_at = ?, provenance = ? WHERE id = ?",
                (
                    run.claim_by,
                    until_p,
                    ts,
                    _json({**run.provenance, "replica": replica_of(run.claim_by)}),
                    run_id,
                ),
            )
            self._hold_run(run_id)
        return run_id

    def get_run(self, run_id: int) -> RunRecord | None:
        with self._tx("read") as tx:
            rows = tx.all(f"SELECT {_RUN_COLS} FROM rc_runs WHERE id = ?", (run_id,))
            runs = self._with_hosts(tx, rows)
        return runs[0] if runs else None

    def list_runs(
        self,
        schedule: str | None = None,
        status: RunStatus | None = None,
        template: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """Runs, newest first."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("schedule", schedule), ("status", status), ("template", template)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_RUN_COLS} FROM rc_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._tx("read") as tx:
            return self._with_hosts(tx, tx.all(sql, [*params, limit]))

    def last_runs(self) -> dict[str, RunRecord]:
        """The newest run of every schedule that has one (one query, for listings)."""
        sql = (
            f"SELECT {_RUN_COLS} FROM rc_runs WHERE id IN "
            "(SELECT MAX(id) FROM rc_runs WHERE schedule IS NOT NULL GROUP BY schedule)"
        )
        with self._tx("read") as tx:
            return {r.schedule: r for r in self._with_hosts(tx, tx.all(sql)) if r.schedule}

    def claim_next_run(
        self, worker_id: str, lease_seconds: float, now: datetime
    ) -> RunRecord | None:
        """Take the oldest queued run that is due, mark it running, leased to ``worker_id``
        until ``now + lease_seconds``. PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: the
        single-writer transaction. Never hands one run to two workers."""
        now = as_utc(now, "now")
        ts = self._ts(now)
        with self._tx("write") as tx:
            row = tx.one(
                "SELECT id, provenance FROM rc_runs WHERE status = 'queued' "
                "AND (not_before IS NULL OR not_before <= ?) "
                "AND (wait_for IS NULL OR NOT EXISTS (SELECT 1 FROM rc_runs w "
                "WHERE w.id = rc_runs.wait_for AND w.status IN ('queued', 'running'))) "
                f"ORDER BY id LIMIT 1{self._skip_locked}",
                (ts,),
            )
            if row is None:
                return None
            self._hold_run(row[0])
            until, until_p = self._lease_until(now, lease_seconds)
            tx.run(
                f"UPDATE rc_runs SET status = 'running', worker = ?, lease_expires = {until}, "
                "started_at = ?, provenance = ? WHERE id = ? AND status = 'queued'",
                (worker_id, until_p, ts, self._claimed_provenance(row[1], worker_id), row[0]),
            )
            rows = tx.all(f"SELECT {_RUN_COLS} FROM rc_runs WHERE id = ?", (row[0],))
            return self._with_hosts(tx, rows)[0]

    def claim_run(
        self, run_id: int, worker_id: str, lease_seconds: float, now: datetime
    ) -> RunRecord | None:
        """Claim one given queued run (``reconciler run`` executes its own run); None when it
        is not queued any more (another worker took it, or it was cancelled)."""
        now = as_utc(now, "now")
        ts = self._ts(now)
        with self._tx("write") as tx:
            held = self._hold_run(run_id)
            until, until_p = self._lease_until(now, lease_seconds)
            before = tx.one("SELECT provenance FROM rc_runs WHERE id = ?", (run_id,))
            taken = tx.run(
                f"UPDATE rc_runs SET status = 'running', worker = ?, lease_expires = {until}, "
                "started_at = ?, provenance = ? WHERE id = ? AND status = 'queued'",
                (
                    worker_id,
                    until_p,
                    ts,
                    self._claimed_provenance(before[0] if before else "{}", worker_id),
                    run_id,
                ),
            )
            if not taken:
                if held:
                    self._release_run(run_id)
                return None
            rows = tx.all(f"SELECT {_RUN_COLS} FROM rc_runs WHERE id = ?", (run_id,))
            return self._with_hosts(tx, rows)[0]

    def renew_lease(self, run_id: int, worker_id: str, lease_seconds: float, now: datetime) -> bool:
        """Extend the lease; False if the run is no longer running under ``worker_id``."""
        until, until_p = self._lease_until(now, lease_seconds)
        with self._tx("write") as tx:
            n = tx.run(
                f"UPDATE rc_runs SET lease_expires = {until} WHERE id = ? AND worker = ? "
                "AND status = 'running'",
                (until_p, run_id, worker_id),
            )
        return n == 1

    def expired_runs(self, now: datetime) -> list[RunRecord]:
        """Running runs whose lease ran out before ``now``."""
        at, at_p = self._now_sql(now)
        with self._tx("read") as tx:
            rows = tx.all(
                f"SELECT {_RUN_COLS} FROM rc_runs WHERE status = 'running' "
                f"AND lease_expires < {at} ORDER BY id",
                at_p,
            )
            return self._with_hosts(tx, rows)

    def reap_runs(self, now: datetime) -> list[RunId]:
        """Mark ``abandoned`` every running run whose process is gone; return their ids.

        Gone means: its lease expired before ``now`` (its worker stopped renewing it), or, on
        SQLite, it was claimed on this machine (worker ``host:pid``) and its run lock is free:
        the store that claims a run holds that lock until it finishes the run or closes, and
        the kernel frees it when the process dies, SIGKILL included. Any command that opens the
        state may call this (the daemon does too); it writes only when there is a run to reap.
        """
        ts = self._ts(as_utc(now, "now"))
        at, at_p = self._now_sql(now)
        with self._tx("read") as tx:
            rows = tx.all(
                f"SELECT id, worker, lease_expires < {at} FROM rc_runs "
                "WHERE status = 'running' ORDER BY id",
                at_p,
            )
        expired = any(bool(r[2]) for r in rows)
        gone = [
            (int(r[0]), str(r[1]))
            for r in rows
            if not r[2] and r[1] and self._process_gone(r[0], r[1])
        ]
        if not expired and not gone:
            return []
        reaped: list[RunId] = []
        with self._tx("write") as tx:
            if expired:
                rows = tx.all(
                    "UPDATE rc_runs SET status = 'abandoned', finished_at = ?, "
                    "lease_expires = NULL, "
                    "message = COALESCE(message, 'its worker stopped renewing the lease') "
                    f"WHERE status = 'running' AND lease_expires < {at} RETURNING id",
                    [ts, *at_p],
                )
                reaped += [RunId(r[0]) for r in rows]
            for run_id, worker in gone:
                rows = tx.all(
                    "UPDATE rc_runs SET status = 'abandoned', finished_at = ?, "
                    "lease_expires = NULL, message = COALESCE(message, ?) "
                    "WHERE id = ? AND status = 'running' AND worker = ? RETURNING id",
                    (ts, f"its process ({worker}) ended before the run did", run_id, worker),
                )
                reaped += [RunId(r[0]) for r in rows]
        return sorted(reaped)

    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        now: datetime,
        message: str | None = None,
        worker_id: str | None = None,
    ) -> bool:
        """Give a queued or running run its final status. With ``worker_id``, only if that
        worker still holds the run. False when the run was final already (or not ours)."""
        check_literal(status, RunStatus, "run status")
        if status not in FINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final run status")
        sql = (
            "UPDATE rc_runs SET status = ?, finished_at = ?, lease_expires = NULL, "
            "message = COALESCE(?, message) WHERE id = ? AND status IN ('queued', 'running')"
        )
        params: list[Any] = [status, self._ts(as_utc(now, "now")), message, run_id]
        if worker_id is not None:
            sql += " AND worker = ?"
            params.append(worker_id)
        with self._tx("write") as tx:
            n = tx.run(sql, params)
        self._release_run(run_id)
        return n == 1

    def set_host_results(self, run_id: int, results: Sequence[HostResult]) -> None:
        """Insert or replace the per-host counters of a run."""
        if not results:
            return
        with self._tx("write") as tx:
            self._write_hosts(tx, run_id, results)

    @staticmethod
    def _write_hosts(tx: Tx, run_id: int, results: Sequence[HostResult]) -> None:
        tx.many(
            f"INSERT INTO rc_host_results ({_HOST_COLS}) VALUES (?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (run_id, server) DO UPDATE SET status = excluded.status, "
            "ok = excluded.ok, changed = excluded.changed, failed = excluded.failed, "
            "unreachable = excluded.unreachable, skipped = excluded.skipped, "
            "drifted = excluded.drifted",
            [
                (
                    run_id,
                    h.server,
                    h.status,
                    h.ok,
                    h.changed,
                    h.failed,
                    h.unreachable,
                    h.skipped,
                    h.drifted,
                )
                for h in results
            ],
        )

    def append_log(self, run_id: int, text: str) -> bool:
        """Append to a run's log; True if all of ``text`` was kept. Past the cap the rest is
        dropped, and one marker line says so."""
        if not text:
            return True
        with self._tx("write") as tx:
            row = tx.one(
                f"SELECT log_size, log_truncated FROM rc_runs WHERE id = ?{self._lock_row}",
                (run_id,),
            )
            if row is None:
                raise UsageError(f"there is no run {run_id}")
            size, truncated = int(row[0]), bool(row[1])
            if truncated:
                return False
            data = text.encode("utf-8")
            room = self.log_cap - size
            chunks: list[bytes]
            if len(data) <= room:
                chunks, kept = [data], True
            else:
                cut = data[: _char_boundary(data, max(room, 0))]
                marker = (
                    f"\n[log truncated: this run's log reached its cap of {self.log_cap} bytes]\n"
                ).encode()
                chunks, kept = [c for c in (cut, marker) if c], False
            rows = []
            for c in chunks:
                rows.append((run_id, size, len(c), c))
                size += len(c)
            tx.many("INSERT INTO rc_run_logs (run_id, pos, size, data) VALUES (?, ?, ?, ?)", rows)
            tx.run(
                "UPDATE rc_runs SET log_size = ?, log_truncated = ? WHERE id = ?",
                (size, not kept, run_id),
            )
        return kept

    def read_log(self, run_id: int, offset: int = 0, limit: int | None = None) -> LogSlice:
        """The log from byte ``offset`` on (at most about ``limit`` bytes); follow a running
        log by calling again with ``next_offset``."""
        with self._tx("read") as tx:
            head = tx.one("SELECT log_size, log_truncated FROM rc_runs WHERE id = ?", (run_id,))
            if head is None:
                raise UsageError(f"there is no run {run_id}")
            rows = tx.all(
                "SELECT pos, data FROM rc_run_logs WHERE run_id = ? AND pos + size > ? "
                "ORDER BY pos",
                (run_id, offset),
            )
        parts: list[bytes] = []
        total = 0
        for pos, data in rows:
            blob = bytes(data)
            if pos < offset:
                blob = blob[offset - pos :]
            parts.append(blob)
            total += len(blob)
            if limit is not None and total >= limit:
                break
        data = b"".join(parts)
        if limit is not None and len(data) > limit:
            data = data[: _char_boundary(data, limit) or limit]
        return LogSlice(
            text=data.decode("utf-8", errors="replace"),
            offset=offset,
            next_offset=offset + len(data),
            truncated=bool(head[1]),
        )

    # -- drift

    def record_drift(self, records: Sequence[DriftRecord]) -> None:
        for d in records:
            check_literal(d.state, DriftState, "drift state")
        with self._tx("write") as tx:
            self._write_drift(tx, records)

    def _write_drift(self, tx: Tx, records: Sequence[DriftRecord]) -> None:
        tx.many(
            "INSERT INTO rc_drift (server, template, run_id, state, details, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    d.server,
                    d.template,
                    d.run_id,
                    d.state,
                    _json(dict(d.details)),
                    self._ts(as_utc(d.at, "at")),
                )
                for d in records
            ],
        )

    def list_drift(
        self, server: str | None = None, template: str | None = None, latest: bool = True
    ) -> list[DriftRecord]:
        """Drift records; with ``latest`` only the newest per (server, template)."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("server", server), ("template", template)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        cols = "server, template, run_id, state, details, at"
        if latest:
            sql = (
                f"SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY server, "
                f"template ORDER BY at DESC, id DESC) AS rn FROM rc_drift{cond}) AS t "
                "WHERE rn = 1 ORDER BY server, template"
            )
        else:
            sql = f"SELECT {cols} FROM rc_drift{cond} ORDER BY at DESC, id DESC"
        with self._tx("read") as tx:
            rows = tx.all(sql, params)
        return [
            DriftRecord(
                r[0],
                r[1],
                None if r[2] is None else RunId(r[2]),
                r[3],
                self._json_of(r[4], f"the drift of {r[0]} for {r[1]}"),
                self._dt(r[5], f"the drift of {r[0]} for {r[1]}"),
            )
            for r in rows
        ]

    # -- pages of the dashboard (api/dashboard/, engine/browsing.py): bounded, indexed reads

    def page_objects(
        self,
        kind: str,
        after: str | None = None,
        limit: int = 50,
        state: ObjectState | None = None,
        contains: str | None = None,
        needs_approval: bool = False,
    ) -> list[ObjectRecord]:
        """At most ``limit`` objects of ``kind`` whose name sorts after ``after``, by name (a
        range of the primary key); optionally only those in ``state``, whose name holds
        ``contains``, or (``needs_approval``) whose content is decided by approvals."""
        sql = f"SELECT {_OBJ_COLS} FROM rc_objects WHERE kind = ?"
        params: list[Any] = [kind]
        if after is not None:
            sql += " AND name > ?"
            params.append(after)
        if state is not None:
            sql += " AND state = ?"
            params.append(state)
        if needs_approval:
            sql += " AND approval_hash IS NOT NULL"
        if contains:
            escaped = contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            sql += " AND name LIKE ? ESCAPE '\\'"
            params.append(f"%{escaped}%")
        with self._tx("read") as tx:
            rows = tx.all(sql + " ORDER BY name LIMIT ?", [*params, limit])
        return [self._object(r) for r in rows]

    def count_states(self, kind: str) -> dict[str, int]:
        """How many objects of ``kind`` are in each state (``""`` for kinds without one)."""
        with self._tx("read") as tx:
            rows = tx.all(
                "SELECT COALESCE(state, ''), COUNT(*) FROM rc_objects WHERE kind = ? "
                "GROUP BY COALESCE(state, '')",
                (kind,),
            )
        return {str(r[0]): int(r[1]) for r in rows}

    def last_runs_of(self, schedules: Sequence[str]) -> dict[str, RunRecord]:
        """The newest run of each of ``schedules`` that has one (an index range each)."""
        out: dict[str, RunRecord] = {}
        names = list(dict.fromkeys(schedules))
        with self._tx("read") as tx:
            for chunk in _chunks(names, 500):
                marks = ",".join("?" * len(chunk))
                sql = (
                    f"SELECT {_RUN_COLS} FROM rc_runs WHERE id IN (SELECT MAX(id) FROM rc_runs "
                    f"WHERE schedule IN ({marks}) GROUP BY schedule)"
                )
                for r in self._with_hosts(tx, tx.all(sql, list(chunk))):
                    if r.schedule:
                        out[r.schedule] = r
        return out

    def record_approval(self, approval: Approval) -> None:
        """Record a user's decision on one content hash; a later decision replaces theirs."""
        check_literal(approval.decision, Decision, "decision")
        with self._tx("write") as tx:
            tx.run(
                _UPSERT_APPROVAL,
                (
                    approval.schedule,
                    approval.content_hash,
                    approval.user,
                    approval.decision,
                    self._ts(as_utc(approval.at, "at")),
                    approval.reason,
                    approval.via,
                    approval.revision,
                ),
            )

    def list_approvals(
        self, schedule: str | None = None, content_hash: str | None = None
    ) -> list[Approval]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("schedule", schedule), ("content_hash", content_hash)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        with self._tx("read") as tx:
            rows = tx.all(
                f"SELECT {_APPROVAL_COLS} FROM rc_approvals{cond} ORDER BY schedule, at, user_name",
                params,
            )
        return [self._approval(r) for r in rows]

    def _approval(self, r: Sequence[Any]) -> Approval:
        return Approval(r[0], r[1], r[2], r[3], self._dt(r[4]), r[5], r[6], r[7])

    # -- API keys

    def _api_key(self, r: tuple[Any, ...]) -> ApiKey:
        what = f'the API key "{r[0]}"'
        return ApiKey(
            r[0],
            r[1],
            tuple(self._json_of(r[2], what, list)),
            tuple(self._json_of(r[3], what, list)),
            r[4],
            self._dt(r[5]),
            self._odt(r[6]),
        )

    _KEY_COLS = "name, key_hash, scopes, templates, user_name, created_at, revoked_at"

    def create_api_key(
        self,
        name: str,
        secret: str,
        scopes: Sequence[Scope],
        templates: Sequence[str],
        user: str | None,
        now: datetime,
    ) -> ApiKey:
        """Store a new key. Only the SHA-256 of ``secret`` is written; the secret itself is
        never stored. StateConflict if the name (or the secret) is in use."""
        if len(secret) < 16:
            raise ValueError("an API key secret must have at least 16 characters")
        for s in scopes:
            check_literal(s, Scope, "scope")
        with self._tx("write") as tx:
            n = tx.run(
                f"INSERT INTO rc_api_keys ({self._KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, NULL) "
                "ON CONFLICT DO NOTHING",
                (
                    name,
                    hash_secret(secret),
                    _json(sorted(set(scopes))),
                    _json(sorted(set(templates))),
                    user,
                    self._ts(as_utc(now, "now")),
                ),
            )
            if n != 1:
                raise StateConflict(f"an API key named {name!r} already exists")
            row = tx.one(f"SELECT {self._KEY_COLS} FROM rc_api_keys WHERE name = ?", (name,))
        assert row is not None
        return self._api_key(row)

    def find_api_key(self, secret: str) -> ApiKey | None:
        """The active (not revoked) key whose secret is ``secret``, by its hash."""
        with self._tx("read") as tx:
            row = tx.one(
                f"SELECT {self._KEY_COLS} FROM rc_api_keys WHERE key_hash = ? "
                "AND revoked_at IS NULL",
                (hash_secret(secret),),
            )
        return None if row is None else self._api_key(row)

    def list_api_keys(self) -> list[ApiKey]:
        with self._tx("read") as tx:
            rows = tx.all(f"SELECT {self._KEY_COLS} FROM rc_api_keys ORDER BY name")
        return [self._api_key(r) for r in rows]

    def revoke_api_key(self, name: str, now: datetime) -> bool:
        """Revoke a key; False if there is no such active key."""
        with self._tx("write") as tx:
            n = tx.run(
                "UPDATE rc_api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (self._ts(as_utc(now, "now")), name),
            )
        return n == 1

    # -- leases

    def acquire_lease(self, name: str, owner: str, ttl_seconds: float, now: datetime) -> bool:
        """Take or renew the lease ``name`` for ``owner``; False while another owner holds an
        unexpired one."""
        now = as_utc(now, "now")
        with self._tx("write") as tx:
            n = tx.run(
                "INSERT INTO rc_leases (name, owner, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "expires = excluded.expires "
                "WHERE rc_leases.owner = excluded.owner OR rc_leases.expires <= ?",
                (name, owner, self._ts(now + timedelta(seconds=ttl_seconds)), self._ts(now)),
            )
        return n == 1

    def release_lease(self, name: str, owner: str) -> bool:
        with self._tx("write") as tx:
            n = tx.run("DELETE FROM rc_leases WHERE name = ? AND owner = ?", (name, owner))
        return n == 1

    def get_lease(self, name: str) -> Lease | None:
        with self._tx("read") as tx:
            row = tx.one("SELECT name, owner, expires FROM rc_leases WHERE name = ?", (name,))
        return None if row is None else Lease(row[0], row[1], self._dt(row[2]))

    # -- the live half: firing, replicas, reconcile attempts, cancel, heartbeats

    def fire_cursors(self) -> dict[str, Cursor]:
        """Every schedule's firing cursor (how far its ledger is complete)."""
        with self._tx("read") as tx:
            rows = tx.all("SELECT schedule, last_slot, when_hash FROM rc_cursors")
        return {r[0]: Cursor(r[0], self._dt(r[1]), r[2]) for r in rows}

    def _write_firing(
        self,
        tx: Tx,
        upserts: Sequence[ObjectWrite],
        gone: Sequence[str],
        serial: int,
        revision: str | None,
        ts: Any,
    ) -> None:
        """Keep the firing rows in step with the applied schedules (same transaction)."""
        if self._schema_version < _FIRING_SCHEMA:  # a state held at an older schema
            return
        rows: list[tuple[Any, ...]] = []
        drop = list(gone)
        for u in upserts:
            if u.kind == "Schedule":
                row = _firing_row(u.name, serial, u.body, u.state, u.state_reason)
                if row is None:
                    drop.append(u.name)  # firing reads the body and reports it broken
                else:
                    rows.append((*row[:4], revision, ts, *row[4:]))
        for chunk in _chunks(drop, 500):
            tx.run(f"DELETE FROM rc_firing WHERE schedule IN ({','.join('?' * len(chunk))})", chunk)
        self._insert_firing(tx, rows)
        if self._schema_version >= _BARE_SCHEMA:
            dropped = set(drop)
            bare = [u.name for u in upserts if u.kind == "Schedule" and u.name in dropped]
            # usually empty: then a schedule that got its firing row back needs no delete
            if bare or tx.one("SELECT 1 FROM rc_firing_bare LIMIT 1") is not None:
                for chunk in _chunks([*gone, *(r[0] for r in rows)], 500):
                    tx.run(
                        f"DELETE FROM rc_firing_bare WHERE schedule IN "
                        f"({','.join('?' * len(chunk))})",
                        chunk,
                    )
                for chunk in _chunks(bare, 500):
                    tx.run(
                        "INSERT INTO rc_firing_bare (schedule) VALUES "
                        + ",".join(["(?)"] * len(chunk))
                        + " ON CONFLICT (schedule) DO NOTHING",
                        chunk,
                    )

    def _insert_firing(self, tx: Tx, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            cols = _FIRING_COLS.split(", ")
            tx.many(
                f"INSERT INTO rc_firing ({_FIRING_COLS}) VALUES ({','.join('?' * len(cols))}) "
                "ON CONFLICT (schedule) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in cols[1:]),
                rows,
            )

    def _backfill_bare(self, tx: Tx) -> None:
        """List the applied schedules without a firing row (once both tables exist)."""
        if {"rc_firing", "rc_firing_bare"} <= self._table_names(tx):
            tx.run(
                "INSERT INTO rc_firing_bare (schedule) SELECT o.name FROM rc_objects o "
                "WHERE o.kind = 'Schedule' AND NOT EXISTS "
                "(SELECT 1 FROM rc_firing f WHERE f.schedule = o.name) "
                "ON CONFLICT (schedule) DO NOTHING"
            )

    def _backfill_firing(self, tx: Tx) -> None:
        rows = []
        for r in tx.all(
            "SELECT name, serial, body, state, state_reason, revision, updated_at "
            "FROM rc_objects WHERE kind = 'Schedule'"
        ):
            row = _firing_row(r[0], r[1], r[2], r[3], r[4])
            if row is not None:
                rows.append((*row[:4], r[5], r[6], *row[4:]))
        self._insert_firing(tx, rows)

    def _bare_listed_all(self, tx: Tx, with_rows: int) -> bool:
        """Whether every applied schedule without a firing row is in ``rc_firing_bare``: the
        schedules count as many as their ``with_rows`` firing rows and the listed ones (not so
        when a row was deleted by hand; then they are compared one by one)."""
        applied = tx.one("SELECT count(*) FROM rc_objects WHERE kind = 'Schedule'")
        listed = tx.one("SELECT count(*) FROM rc_firing_bare")
        assert applied is not None and listed is not None
        return int(applied[0]) == with_rows + int(listed[0])

    def firing_heads(self, names: Sequence[str] | None = None) -> list[FiringHead]:
        """Every applied schedule (or those of ``names``) with its firing row and cursor, by
        name. Only firing rows are read (no body), the part schedules share once per shape;
        only a schedule without a firing row (its body lacks what firing needs) comes with its
        body."""
        out: list[FiringHead] = []
        # schedules of one apply share their instants, those fired together their cursor's:
        # each parsed once
        instants: dict[Any, datetime] = {}

        def dt(value: Any, what: str) -> datetime:
            got = instants.get(value)
            if got is None:
                got = instants[value] = self._dt(value, what)
            return got

        def cursor(name: str, last: Any, when_hash: Any) -> Cursor | None:
            return None if last is None else Cursor(name, dt(last, "a cursor"), when_hash)

        rows_kept = self._schema_version >= _FIRING_SCHEMA
        with self._tx("read") as tx:
            specs = {
                r[0]: FiringSpec(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[0])
                for r in tx.all(f"SELECT DISTINCT shape, {_SHAPE_COLS} FROM rc_firing")
                if rows_kept
            }
            if names is None:
                chunks: list[list[Any]] = [[]]
            else:
                chunks = [list(c) for c in _chunks(list(dict.fromkeys(names)), 500)]
            # the few schedules whose template requires approval (their runs' provenance),
            # from their partial index
            approval = {
                r[0]: r[1]
                for r in tx.all(
                    "SELECT name, approval_hash FROM rc_objects WHERE kind = 'Schedule' "
                    "AND approval_hash IS NOT NULL"
                )
            }
            bare_listed = self._schema_version >= _BARE_SCHEMA
            bare: list[tuple[Any, ...]] = []
            for chunk in chunks:
                marks = ",".join("?" * len(chunk))
                rows = (
                    []
                    if not rows_kept
                    else tx.all(
                        "SELECT f.schedule, f.serial, f.state, f.state_reason, f.revision, "
                        "f.updated_at, f.shape, c.last_slot, c.when_hash "
                        "FROM rc_firing f LEFT JOIN rc_cursors c ON c.schedule = f.schedule"
                        + (f" WHERE f.schedule IN ({marks})" if chunk else "")
                        + " ORDER BY f.schedule",
                        chunk,
                    )
                )
                get = instants.get
                for r in rows:  # the hot loop of a start-up: as little as possible per row
                    at = get(r[5]) or dt(r[5], f'the applied Schedule "{r[0]}"')
                    last = None if r[7] is None else get(r[7]) or dt(r[7], "a cursor")
                    out.append(
                        FiringHead(
                            r[0],
                            r[1],
                            r[2],
                            r[3],
                            r[4],
                            at,
                            specs[r[6]],
                            None,
                            None if last is None else Cursor(r[0], last, r[8]),
                            approval.get(r[0]) if approval else None,
                        )
                    )
                if bare_listed and not chunk and self._bare_listed_all(tx, len(rows)):
                    # all of them: the listed ones, not a comparison of every schedule with its
                    # firing row (for a few names, that comparison is a lookup per name)
                    where = "o.name IN (SELECT schedule FROM rc_firing_bare)"
                elif rows_kept:
                    where = "NOT EXISTS (SELECT 1 FROM rc_firing f WHERE f.schedule = o.name)"
                else:
                    where = "TRUE"
                bare += tx.all(
                    "SELECT o.name, o.serial, o.state, o.state_reason, o.revision, "
                    "o.updated_at, o.body, c.last_slot, c.when_hash FROM rc_objects o "
                    "LEFT JOIN rc_cursors c ON c.schedule = o.name WHERE o.kind = 'Schedule' "
                    + (f"AND o.name IN ({marks}) " if chunk else "")
                    + f"AND {where}",
                    chunk,
                )
        for r in bare:
            what = f'the applied Schedule "{r[0]}"'
            out.append(
                FiringHead(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    dt(r[5], what),
                    None,
                    r[6],
                    cursor(r[0], r[7], r[8]),
                    approval.get(r[0]),
                )
            )
        if len(chunks) > 1 or bare:
            out.sort(key=lambda h: h.name)
        return out

    def record_fires(
        self,
        batches: Sequence[FireBatch],
        now: datetime,
        recheck: Recheck | None = None,
        hold: Hold | None = None,
    ) -> list[FireResult]:
        """Record the ledger entries of many schedules in one transaction (a burst of 1,000
        slots due at one instant is one commit). Each batch is guarded by its cursor
        (compare-and-swap): a batch whose cursor another replica moved is left out and
        reported ``ok=False``; the (schedule, slot) key stays the last line of defence.

        Set-based: one read of the cursors, then multi-row inserts of the runs, their ledger
        rows, the skips and the cursors (a few statements per 500 rows, not eight per slot: on
        PostgreSQL each statement is a round trip).

        ``recheck``: the batches were decided ahead of time; it is given the schedules'
        running and queued runs, read in this transaction, and returns the batches to write
        (the results are in the order of those).

        ``hold``: called after every row is written, before the commit (see
        :data:`~reconciler.stores.base.Hold`). Meanwhile the transaction holds SQLite's write
        lock, and on PostgreSQL the cursor rows of its schedules."""
        ts = self._ts(as_utc(now, "now"))
        results: dict[str, FireResult] = {}
        with self._tx("write") as tx:
            if recheck is not None:
                batches = recheck(self._activity(tx, [b.schedule for b in batches]))
            stored = self._cursors_of(tx, [b.schedule for b in batches])
            fresh: list[FireBatch] = []
            for b in batches:
                cur = stored.get(b.schedule)
                if b.cursor is None:  # never fired under this ``when``
                    ok = cur is None or cur[1] != b.when_hash
                else:
                    ok = cur == (as_utc(b.cursor), b.when_hash)
                if ok:
                    fresh.append(b)
                else:
                    results[b.schedule] = FireResult(b.schedule, False)
            for b in fresh:
                for run_id in b.cancel:
                    tx.run(
                        "UPDATE rc_runs SET cancel_requested = TRUE, cancel_by = ? "
                        "WHERE id = ? AND status = 'running'",
                        ("overlap: cancelled for a newer slot", run_id),
                    )
                    tx.run(
                        "UPDATE rc_runs SET status = 'cancelled', finished_at = ?, "
                        "message = 'cancelled for a newer slot (overlap: cancel)' "
                        "WHERE id = ? AND status = 'queued'",
                        (ts, run_id),
                    )
            new_runs = [(b.schedule, e.run) for b in fresh for e in b.entries if e.run is not None]
            for b in fresh:
                for e in b.entries:
                    if e.run is None and not e.skip_reason:
                        raise ValueError("a ledger entry is a run or a skip with a reason")
            memo = _RowMemo(self)
            created = self._insert_fired_runs(tx, [r for _, r in new_runs], ts, memo)
            skips = [
                [
                    b.schedule,
                    memo.jts(e.slot, "slot"),
                    e.skip_reason,
                    e.detail,
                    None if e.until is None else memo.jts(e.until, "until"),
                    e.count,
                ]
                for b in fresh
                for e in b.entries
                if e.run is None
            ]
            # the skips this transaction wrote (a slot another replica recorded first keeps its
            # entry): what the results report, so counters summed over replicas stay exact
            skipped: dict[str, dict[str, int]] = {}
            for chunk in _chunks(skips, _JSON_CHUNK):
                for r in self._json_insert(
                    tx,
                    "rc_slots",
                    _SKIP_COLS,
                    chunk,
                    (("run_id", None), ("recorded_at", ts)),
                    "ON CONFLICT (schedule, slot) DO NOTHING",
                    "schedule, skip_reason, slot_count",
                ):
                    mine = skipped.setdefault(r[0], {})
                    mine[r[1]] = mine.get(r[1], 0) + int(r[2])
            cursors = [[b.schedule, memo.jts(b.new_cursor, "cursor"), b.when_hash] for b in fresh]
            for chunk in _chunks(cursors, _JSON_CHUNK):
                self._json_insert(
                    tx,
                    "rc_cursors",
                    (("schedule", "text"), ("last_slot", "ts"), ("when_hash", "text")),
                    chunk,
                    (("updated_at", ts),),
                    "ON CONFLICT (schedule) DO UPDATE SET last_slot = excluded.last_slot, "
                    "when_hash = excluded.when_hash, updated_at = excluded.updated_at",
                )
            by_schedule: dict[str, list[RunRecord]] = {}
            at = as_utc(now, "now")
            for new_id, run, f in created:  # the records as written (no read back)
                # positional, in the order of RunRecord's fields: a burst builds a thousand
                rec = RunRecord(
                    RunId(new_id),
                    run.schedule,
                    f.template,
                    run.trigger,
                    None if run.slot is None else memo.utc(run.slot),
                    run.status,
                    f.commit,
                    at,
                    None,  # not_before
                    None,  # started_at
                    at if run.status != "queued" else None,  # finished_at
                    f.variables,
                    f.targets,
                    f.simulate,
                    run.message,
                    f.requested_by,
                    f.retry_of,
                    None,  # worker
                    None,  # lease_expires
                    0,  # log_size
                    False,  # log_truncated
                    f.untrusted,
                    (),  # hosts
                    f.provenance,
                )
                by_schedule.setdefault(rec.schedule or "", []).append(rec)
            if hold is not None:
                hold()
        for b in fresh:
            runs = sorted(by_schedule.get(b.schedule, []), key=lambda r: r.id)
            results[b.schedule] = FireResult(
                b.schedule, True, tuple(runs), tuple(skipped.get(b.schedule, {}).items())
            )
        return [results[b.schedule] for b in batches]

    def _cursors_of(self, tx: Tx, schedules: Sequence[str]) -> dict[str, tuple[datetime, str]]:
        out: dict[str, tuple[datetime, str]] = {}
        for chunk in _chunks(list(dict.fromkeys(schedules)), 500):
            rows = tx.all(
                "SELECT schedule, last_slot, when_hash FROM rc_cursors WHERE schedule IN "
                f"({','.join('?' * len(chunk))}){self._lock_row}",
                chunk,
            )
            out.update({r[0]: (self._dt(r[1]), r[2]) for r in rows})
        return out

    def _insert_fired_runs(
        self, tx: Tx, runs: Sequence[NewRun], ts: Any, memo: _RowMemo
    ) -> list[tuple[int, NewRun, _SharedFields]]:
        """Insert the runs of fired slots with their ledger rows, set-based; a slot that is
        taken already (the unique key) keeps its entry and its new run is deleted again.
        Returns the runs kept, with their ids and the record fields their group shares.

        Runs of one burst share most of their columns (a schedule's shape: template, commit,
        variables, targets, provenance), so runs are grouped by those and each group is one
        statement whose shared values are bound once and whose own (schedule, slot, trigger,
        status, message, wait_for) go as JSON rows."""
        groups: dict[tuple[Any, ...], list[NewRun]] = {}
        for run in runs:
            if run.trigger not in _SLOT_TRIGGERS:
                check_literal(run.trigger, RunTrigger, "trigger")
            if run.schedule is None or run.slot is None:
                raise ValueError("a fired run needs a schedule and a slot")
            groups.setdefault(memo.shared_run_values(run), []).append(run)
        kept: list[tuple[int, NewRun, _SharedFields]] = []
        finished = self._json_ts(ts)  # the runs recorded final at once (their owner lost run)
        for shared_values, members in groups.items():
            shared = [*zip(_SHARED_RUN_COLS, shared_values, strict=True), ("created_at", ts)]
            first = members[0]
            fields = _SharedFields(  # what the records of the group share (read only)
                first.template,
                first.commit,
                memo.variables(first),
                memo.targets(first),
                first.simulate,
                first.requested_by,
                first.retry_of,
                memo.untrusted(first),
                first.provenance,
            )
            for chunk in _chunks(members, _JSON_CHUNK):
                per_row = [
                    [
                        r.schedule,
                        memo.jts(cast(datetime, r.slot), "slot"),
                        r.trigger,
                        r.status,
                        r.message,
                        r.wait_for,
                        None if r.status == "queued" else finished,
                    ]
                    for r in chunk
                ]
                sql, params = self._json_insert_sql("rc_runs", _OWN_RUN_COLS, per_row, shared)
                slot_keys = [(r.schedule, memo.ts(cast(datetime, r.slot), "slot")) for r in chunk]
                new_ids = self._insert_new_runs(tx, sql, params, slot_keys)
                # their ledger rows from the rows just written: a slot that has its entry
                # already (another replica recorded it first) keeps it, and its new run goes
                cond, cond_params = self._ids_in("id", new_ids)
                won = tx.run(
                    "INSERT INTO rc_slots (schedule, slot, run_id, skip_reason, detail, "
                    f"recorded_at) SELECT schedule, slot, id, NULL, NULL, ? FROM rc_runs "
                    f"WHERE {cond} ON CONFLICT (schedule, slot) DO NOTHING",
                    [ts, *cond_params],
                )
                lost: set[int] = set()
                if won != len(new_ids):
                    cond, cond_params = self._ids_in("r.id", new_ids)
                    lost = {
                        int(r[0])
                        for r in tx.all(
                            f"SELECT r.id FROM rc_runs r WHERE {cond} AND NOT EXISTS "
                            "(SELECT 1 FROM rc_slots s WHERE s.schedule = r.schedule "
                            "AND s.slot = r.slot AND s.run_id = r.id)",
                            cond_params,
                        )
                    }
                    for part in _chunks(sorted(lost), 500):
                        tx.run(
                            f"DELETE FROM rc_runs WHERE id IN ({','.join('?' * len(part))})",
                            part,
                        )
                kept += [
                    (i, run, fields) for i, run in zip(new_ids, chunk, strict=True) if i not in lost
                ]
        return kept

    def schedule_activity(
        self, schedules: Sequence[str] | None = None
    ) -> dict[str, tuple[list[RunId], list[RunId]]]:
        """Per schedule, its running and its queued runs, oldest first (for the overlap policy).
        With ``schedules``, at least theirs: the firing loop asks for the schedules due at a
        wake, so a backlog of other schedules' queued runs costs it nothing.

        Both queries are answered from the partial index ``rc_runs_active`` alone (an
        ``ORDER BY id`` would make SQLite scan every run ever recorded instead), so the cost
        follows the active runs asked for, not the history; the order is restored here."""
        with self._tx("read") as tx:
            return self._activity(tx, schedules)

    def _activity(self, tx: Tx, schedules: Sequence[str] | None) -> Activity:
        sql = (
            "SELECT schedule, id, status FROM rc_runs WHERE status IN ('queued', 'running') "
            "AND schedule IS NOT NULL"
        )
        params: list[str] = []
        if schedules is not None and len(schedules) <= _ACTIVITY_NAMES:
            if not schedules:
                return {}
            params = list(schedules)
            sql += f" AND schedule IN ({','.join('?' * len(params))})"
        rows = tx.all(sql, params)
        out: Activity = {}
        for schedule, run_id, status in sorted(rows, key=lambda r: int(r[1])):  # oldest first
            running, queued = out.setdefault(schedule, ([], []))
            (running if status == "running" else queued).append(RunId(run_id))
        return out

    def queue_counts(self) -> dict[str, int]:
        """How many runs are ``queued`` and ``running``."""
        with self._tx("read") as tx:
            rows = tx.all(
                "SELECT status, COUNT(*) FROM rc_runs WHERE status IN ('queued', 'running') "
                "GROUP BY status"
            )
        counts = {"queued": 0, "running": 0}
        counts.update({r[0]: int(r[1]) for r in rows})
        return counts

    def state_counts(self, kind: str = "Schedule") -> dict[str, int]:
        """How many applied objects of ``kind`` are in each state (every state of
        :data:`ObjectState` present, 0 where none is): one count, not a read of the objects,
        so a scrape of ``GET /metrics`` stays cheap with 100,000 schedules."""
        with self._tx("read") as tx:
            rows = tx.all(
                "SELECT COALESCE(state, 'active'), COUNT(*) FROM rc_objects WHERE kind = ? "
                "GROUP BY COALESCE(state, 'active')",
                (kind,),
            )
        counts = dict.fromkeys(get_args(ObjectState), 0)
        for state, n in rows:
            counts[str(state)] = counts.get(str(state), 0) + int(n)
        return counts

    def request_cancel(self, run_id: int, now: datetime, by: str | None) -> RunRecord | None:
        """Cancel a run: a queued one is ``cancelled`` at once; a running one is flagged and its
        worker cancels it at its next heartbeat. None when there is no such run; the record as
        it is when it was final already."""
        ts = self._ts(as_utc(now, "now"))
        note = f"cancelled by {by}" if by else "cancelled"
        with self._tx("write") as tx:
            tx.run(
                "UPDATE rc_runs SET status = 'cancelled', finished_at = ?, message = ? "
                "WHERE id = ? AND status = 'queued'",
                (ts, note, run_id),
            )
            tx.run(
                "UPDATE rc_runs SET cancel_requested = TRUE, cancel_by = ? "
                "WHERE id = ? AND status = 'running'",
                (note, run_id),
            )
            rows = tx.all(f"SELECT {_RUN_COLS} FROM rc_runs WHERE id = ?", (run_id,))
            runs = self._with_hosts(tx, rows)
        return runs[0] if runs else None

    def heartbeat(
        self, run_id: int, worker_id: str, lease_seconds: float, now: datetime
    ) -> HeartbeatAnswer:
        """Renew the lease of a running run held by ``worker_id`` and say whether a cancel was
        requested; ``lost`` when the run is not running under this worker any more."""
        until, until_p = self._lease_until(now, lease_seconds)
        with self._tx("write") as tx:
            row = tx.one(
                f"UPDATE rc_runs SET lease_expires = {until} WHERE id = ? AND worker = ? "
                "AND status = 'running' RETURNING cancel_requested",
                (until_p, run_id, worker_id),
            )
        if row is None:
            return "lost"
        return "cancel" if row[0] else "ok"

    def cancel_note(self, run_id: int) -> str | None:
        """Who asked to cancel a running run (for its final message)."""
        with self._tx("read") as tx:
            row = tx.one("SELECT cancel_by FROM rc_runs WHERE id = ?", (run_id,))
        return None if row is None else row[0]

    def beat_replica(self, replica: Replica) -> None:
        with self._tx("write") as tx:
            tx.run(
                "INSERT INTO rc_replicas (id, host, pid, workers, started, seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET seen = excluded.seen",
                (
                    replica.id,
                    replica.host,
                    replica.pid,
                    replica.workers,
                    self._ts(as_utc(replica.started)),
                    self._ts(as_utc(replica.seen)),
                ),
            )

    def list_replicas(self, seen_since: datetime) -> list[Replica]:
        """Replicas that heartbeat at or after ``seen_since``, oldest first."""
        with self._tx("read") as tx:
            rows = tx.all(
                "SELECT id, host, pid, started, seen, workers FROM rc_replicas "
                "WHERE seen >= ? ORDER BY started, id",
                (self._ts(as_utc(seen_since)),),
            )
        return [
            Replica(r[0], r[1], int(r[2]), self._dt(r[3]), self._dt(r[4]), int(r[5])) for r in rows
        ]

    def remove_replica(self, replica_id: str) -> bool:
        with self._tx("write") as tx:
            return tx.run("DELETE FROM rc_replicas WHERE id = ?", (replica_id,)) == 1

    def record_attempt(
        self,
        attempt: ReconcileAttempt,
        notifications: Sequence[OutboxWrite] = (),
        marks: Sequence[NotifyMark] = (),
    ) -> None:
        """Keep the last reconcile attempt; ``notifications`` (stalled) are written to the
        outbox in the same transaction, gated by ``marks`` (once per stalled revision)."""
        with self._tx("write") as tx:
            if notifications or marks:
                self._write_outbox(tx, notifications, marks, attempt.at)
            tx.run(
                "INSERT INTO rc_attempts (id, revision, at, ok, diagnostics, message) "
                "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "revision = excluded.revision, at = excluded.at, ok = excluded.ok, "
                "diagnostics = excluded.diagnostics, message = excluded.message",
                (
                    attempt.revision,
                    self._ts(as_utc(attempt.at)),
                    attempt.ok,
                    _json([dict(d) for d in attempt.diagnostics]),
                    attempt.message,
                ),
            )

    def last_attempt(self) -> ReconcileAttempt | None:
        with self._tx("read") as tx:
            row = tx.one("SELECT revision, at, ok, diagnostics, message FROM rc_attempts")
        if row is None:
            return None
        return ReconcileAttempt(
            row[0], self._dt(row[1]), bool(row[2]), tuple(json.loads(row[3])), row[4]
        )

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
    ) -> bool:
        """Record the end of a run in one transaction: host results, drift, the final status
        and its notifications (the outbox rows, gated by ``marks``), only while ``worker_id``
        still holds the run (fenced: a worker that was stopped past its lease and resumes finds
        its run abandoned and records nothing). False then."""
        check_literal(status, RunStatus, "run status")
        if status not in FINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final run status")
        for d in drift:
            check_literal(d.state, DriftState, "drift state")
        with self._tx("write") as tx:
            n = tx.run(
                "UPDATE rc_runs SET status = ?, finished_at = ?, lease_expires = NULL, "
                "message = COALESCE(?, message) WHERE id = ? AND status = 'running' "
                "AND worker = ?",
                (status, self._ts(as_utc(now, "now")), message, run_id, worker_id),
            )
            if n != 1:
                self._release_run(run_id)
                return False
            if hosts:
                self._write_hosts(tx, run_id, hosts)
            if drift:
                self._write_drift(tx, drift)
            if notifications or marks:
                self._write_outbox(tx, notifications, marks, now)
        self._release_run(run_id)
        return True

    def record_system(self, job: SystemJob) -> None:
        """Record that a system job of the daemon ran (``schedules --system`` lists them)."""
        with self._tx("write") as tx:
            tx.run(
                "INSERT INTO rc_system (name, every_seconds, last_at, detail) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET every_seconds = excluded.every_seconds, "
                "last_at = excluded.last_at, detail = excluded.detail",
                (job.name, int(job.every_seconds), self._ts(as_utc(job.last_at)), job.detail),
            )

    def list_system(self) -> list[SystemJob]:
        with self._tx("read") as tx:
            rows = tx.all(
                "SELECT name, every_seconds, last_at, detail FROM rc_system ORDER BY name"
            )
        return [SystemJob(r[0], float(r[1]), self._dt(r[2]), r[3]) for r in rows]

    def prune_history(self, keep_runs: int, keep_days: int, now: datetime) -> int:
        """Delete finished runs older than ``keep_days`` and all but the newest ``keep_runs`` of
        each schedule, with their host results, logs and ledger lines (the firing cursor, not
        the ledger, is what keeps a slot from firing again), and skip lines older than
        ``keep_days``. Drift records keep their state and lose the link to a deleted run.
        Returns how many runs were deleted."""
        cutoff = self._ts(as_utc(now) - timedelta(days=keep_days))
        final = "status NOT IN ('queued', 'running')"
        with self._tx("write") as tx:
            rows = tx.all(
                f"SELECT id FROM rc_runs WHERE {final} AND created_at < ? "
                "UNION SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY schedule "
                f"ORDER BY id DESC) AS n FROM rc_runs WHERE schedule IS NOT NULL AND {final}) "
                "AS ranked WHERE n > ?",
                (cutoff, keep_runs),
            )
            ids = [int(r[0]) for r in rows]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                tx.run(f"DELETE FROM rc_slots WHERE run_id IN ({marks})", chunk)
                tx.run(f"DELETE FROM rc_host_results WHERE run_id IN ({marks})", chunk)
                tx.run(f"DELETE FROM rc_run_logs WHERE run_id IN ({marks})", chunk)
                tx.run(f"DELETE FROM rc_idempotency WHERE run_id IN ({marks})", chunk)
                tx.run(f"UPDATE rc_outbox SET run_id = NULL WHERE run_id IN ({marks})", chunk)
                tx.run(f"UPDATE rc_drift SET run_id = NULL WHERE run_id IN ({marks})", chunk)
                tx.run(f"UPDATE rc_runs SET retry_of = NULL WHERE retry_of IN ({marks})", chunk)
                tx.run(f"UPDATE rc_runs SET wait_for = NULL WHERE wait_for IN ({marks})", chunk)
                tx.run(f"DELETE FROM rc_runs WHERE id IN ({marks})", chunk)
            tx.run(
                "DELETE FROM rc_slots WHERE run_id IS NULL AND COALESCE(until_slot, slot) < ?",
                (cutoff,),
            )
            tx.run(
                "DELETE FROM rc_outbox WHERE status IN ('sent', 'failed') AND created_at < ?",
                (cutoff,),
            )
        # the pruning job runs daily: the time to refresh what the planner knows of the tables
        # that the firing and the workers write all day
        self._refresh_statistics(("rc_runs", "rc_slots", "rc_cursors", "rc_outbox"))
        return len(ids)

    # -- approvals with their sources and authors (engine/approving.py)

    def record_decisions(
        self, writes: Sequence[DecisionWrite], settle: Settle, now: datetime
    ) -> list[str]:
        """Record (or withdraw) decisions and the schedule states they lead to, in one
        transaction under the serial lock, so concurrent approvers cannot both miss the count:
        ``settle`` sees every decision on the pairs written, its own and those committed
        before. Returns the schedules whose state changed (the serial moves when one did)."""
        for w in writes:
            if w.decision is not None:
                check_literal(w.decision, Decision, "decision")
        ts = self._ts(as_utc(now, "now"))
        pairs = sorted({(w.schedule, w.content_hash) for w in writes})
        changed: list[str] = []
        with self._tx("state") as tx:
            serial = self._lock_serial(tx, None)
            for w in writes:
                if w.decision is None:
                    tx.run(
                        "DELETE FROM rc_approvals WHERE schedule = ? AND content_hash = ? "
                        "AND user_name = ?",
                        (w.schedule, w.content_hash, w.user),
                    )
                    continue
                tx.run(
                    _UPSERT_APPROVAL,
                    (
                        w.schedule,
                        w.content_hash,
                        w.user,
                        w.decision,
                        self._ts(as_utc(w.at, "at")),
                        w.reason,
                        w.via,
                        w.revision,
                    ),
                )
            seen: list[Approval] = []
            for schedule, chash in pairs:
                rows = tx.all(
                    f"SELECT {_APPROVAL_COLS} FROM rc_approvals WHERE schedule = ? AND "
                    "content_hash = ? ORDER BY at, user_name",
                    (schedule, chash),
                )
                seen.extend(self._approval(r) for r in rows)
            states = list(settle(seen))
            for st in states:
                check_literal(st.state, ObjectState, "object state")
            new = serial + 1
            for st in states:
                n = tx.run(
                    "UPDATE rc_objects SET state = ?, state_reason = ?, serial = ?, "
                    "updated_at = ? WHERE kind = 'Schedule' AND name = ? AND approval_hash = ? "
                    "AND state IN ('awaiting-approval', 'denied', 'active') "
                    "AND (state <> ? OR COALESCE(state_reason, '') <> ?)",
                    (
                        st.state,
                        st.reason,
                        new,
                        ts,
                        st.schedule,
                        st.approval_hash,
                        st.state,
                        st.reason or "",
                    ),
                )
                if n != 1:
                    continue
                changed.append(st.schedule)
                if self._schema_version >= _FIRING_SCHEMA:  # the firing row follows its state
                    tx.run(
                        "UPDATE rc_firing SET state = ?, state_reason = ?, serial = ?, "
                        "updated_at = ? WHERE schedule = ?",
                        (st.state, st.reason, new, ts, st.schedule),
                    )
                if st.reopen is not None:
                    slot = self._ts(as_utc(st.reopen, "reopen"))
                    gone = tx.run(
                        "DELETE FROM rc_slots WHERE schedule = ? AND slot = ? AND run_id IS NULL "
                        "AND skip_reason = 'approval-pending'",
                        (st.schedule, slot),
                    )
                    if gone:
                        tx.run("DELETE FROM rc_cursors WHERE schedule = ?", (st.schedule,))
            if changed:
                tx.run("UPDATE rc_meta SET serial = ? WHERE id = 1", (new,))
        return changed

    # -- webhook deliveries (api/routes/webhooks.py, engine/webhooks.py)

    _DELIVERY_COLS = "forge, delivery_id, event, received_at, status, facts, detail, processed_at"

    def _delivery(self, r: Sequence[Any]) -> Delivery:
        return Delivery(
            str(r[0]),
            str(r[1]),
            str(r[2]),
            self._dt(r[3], "rc_deliveries.received_at"),
            r[4],
            json.loads(r[5]),
            r[6],
            None if r[7] is None else self._dt(r[7], "rc_deliveries.processed_at"),
        )

    def record_delivery(self, delivery: Delivery) -> bool:
        """Record a delivery once per ``(forge, delivery_id)`` (the primary key); False: it was
        recorded before (a replay), and nothing was written."""
        d = delivery
        check_literal(d.status, DeliveryStatus, "delivery status")
        with self._tx("write") as tx:
            n = tx.run(
                f"INSERT INTO rc_deliveries ({self._DELIVERY_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (forge, delivery_id) DO NOTHING",
                (
                    d.forge,
                    d.delivery_id,
                    d.event,
                    self._ts(as_utc(d.received_at)),
                    d.status,
                    _json(dict(d.facts)),
                    d.detail,
                    None if d.processed_at is None else self._ts(as_utc(d.processed_at)),
                ),
            )
        return n == 1

    def claim_deliveries(
        self, now: datetime, limit: int = 20, stale_seconds: float = 300.0
    ) -> list[Delivery]:
        """Claim up to ``limit`` pending deliveries, oldest first, for this caller (status
        ``processing``). The UPDATE re-checks the status of every row it takes, so with several
        replicas each delivery is claimed by exactly one. A delivery left ``processing`` for
        longer than ``stale_seconds`` (its replica died) is claimed again."""
        at = as_utc(now, "now")
        stale = self._ts(at - timedelta(seconds=stale_seconds))
        claimable = "(status = 'pending' OR (status = 'processing' AND processed_at < ?))"
        with self._tx("write") as tx:
            rows = tx.all(
                f"UPDATE rc_deliveries SET status = 'processing', processed_at = ? "
                f"WHERE {claimable} AND (forge, delivery_id) IN (SELECT forge, delivery_id "
                f"FROM rc_deliveries WHERE {claimable} ORDER BY received_at LIMIT ?) "
                f"RETURNING {self._DELIVERY_COLS}",
                (self._ts(at), stale, stale, limit),
            )
        return sorted((self._delivery(r) for r in rows), key=lambda d: d.received_at)

    def finish_delivery(
        self,
        forge: str,
        delivery_id: str,
        status: DeliveryStatus,
        detail: str | None,
        now: datetime,
    ) -> bool:
        """Record the outcome of a claimed delivery; False when it is not ``processing``."""
        check_literal(status, DeliveryStatus, "delivery status")
        with self._tx("write") as tx:
            n = tx.run(
                "UPDATE rc_deliveries SET status = ?, detail = ?, processed_at = ? "
                "WHERE forge = ? AND delivery_id = ? AND status = 'processing'",
                (status, detail, self._ts(as_utc(now, "now")), forge, delivery_id),
            )
        return n == 1

    def get_delivery(self, forge: str, delivery_id: str) -> Delivery | None:
        with self._tx("read") as tx:
            r = tx.one(
                f"SELECT {self._DELIVERY_COLS} FROM rc_deliveries "
                "WHERE forge = ? AND delivery_id = ?",
                (forge, delivery_id),
            )
        return None if r is None else self._delivery(r)

    def list_deliveries(
        self, forge: str | None = None, status: DeliveryStatus | None = None, limit: int = 50
    ) -> list[Delivery]:
        """Deliveries, newest first."""
        where, params = [], []
        if forge is not None:
            where.append("forge = ?")
            params.append(forge)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._tx("read") as tx:
            rows = tx.all(
                f"SELECT {self._DELIVERY_COLS} FROM rc_deliveries {clause}"
                "ORDER BY received_at DESC, delivery_id DESC LIMIT ?",
                (*params, limit),
            )
        return [self._delivery(r) for r in rows]

    def prune_deliveries(self, before: datetime) -> int:
        """Forget the finished deliveries received before ``before`` (a replay older than the
        history kept is then accepted again, and its review recorded again: the same
        decision). Returns how many were deleted."""
        with self._tx("write") as tx:
            return tx.run(
                "DELETE FROM rc_deliveries WHERE received_at < ? "
                "AND status NOT IN ('pending', 'processing')",
                (self._ts(as_utc(before)),),
            )

    # -- idempotency keys of the trigger endpoint (api/routes/jobs.py)

    def create_run_once(self, run: NewRun, key: IdempotencyKey, now: datetime) -> IdempotentRun:
        """Create ``run`` unless ``key`` was used within its window (then the first run is
        returned: ``replayed``, or ``conflict`` when that request had another body). The run
        and the key's row are written in one transaction: of two concurrent requests with one
        key only one creates a run. (SQLite: writers are serialised. PostgreSQL: the second
        waits on the key's unique index, finds it taken, rolls its run back and replays.)"""
        return self.create_runs([(run, key)], now)[0]

    def create_runs(
        self,
        items: Sequence[tuple[NewRun, IdempotencyKey | None]],
        now: datetime,
        checks: Sequence[RunCheck | None] | None = None,
    ) -> list[IdempotentRun]:
        """Create many API runs in one transaction (a group commit), each with its
        idempotency key or none, with the rules of :meth:`create_run_once`; one answer per
        item, in order. Two items with one key: the second replays the first. ``checks``
        (one per item, or None) are verified first, in the same transaction: if any fails,
        nothing is written and :class:`ChecksFailed` says which."""
        ts = self._ts(as_utc(now, "now"))
        for _ in range(3):
            try:
                with self._tx("write") as tx:
                    if checks is not None:
                        self._verify_checks(tx, checks)
                    done = [self._create_once(tx, run, key, ts, now) for run, key in items]
                    ids = sorted({run_id for _, run_id in done})
                    rows: list[tuple[Any, ...]] = []
                    for chunk in _chunks(ids, 500):
                        marks = ",".join("?" * len(chunk))
                        rows += tx.all(
                            f"SELECT {_RUN_COLS} FROM rc_runs WHERE id IN ({marks})", chunk
                        )
                    records = {r.id: r for r in self._with_hosts(tx, rows)}
            except _KeyTaken:  # a concurrent transaction took a key first: it is there now
                continue
            return [IdempotentRun(outcome, records[RunId(run_id)]) for outcome, run_id in done]
        raise StateConflict("the idempotency key is being used by concurrent requests; retry")

    def _verify_checks(self, tx: Tx, checks: Sequence[RunCheck | None]) -> None:
        given = [(i, c) for i, c in enumerate(checks) if c is not None]
        if not given:
            return
        row = tx.one("SELECT serial FROM rc_meta")
        serial = None if row is None else int(row[0])
        hashes = sorted({c.key_hash for _, c in given})
        active: set[str] = set()
        for chunk in _chunks(hashes, 500):
            marks = ",".join("?" * len(chunk))
            active.update(
                str(r[0])
                for r in tx.all(
                    f"SELECT key_hash FROM rc_api_keys WHERE key_hash IN ({marks}) "
                    "AND revoked_at IS NULL",
                    chunk,
                )
            )
        failed: dict[int, Literal["stale", "revoked"]] = {}
        for i, c in given:
            if c.key_hash not in active:
                failed[i] = "revoked"
            elif c.serial != serial:
                failed[i] = "stale"
        if failed:
            raise ChecksFailed(failed)

    def _create_once(
        self, tx: Tx, run: NewRun, key: IdempotencyKey | None, ts: Any, now: datetime
    ) -> tuple[Literal["created", "replayed", "conflict"], int]:
        if key is None:
            return "created", self._insert_run(tx, run, ts, now)
        cutoff = self._ts(as_utc(now, "now") - timedelta(seconds=key.window_seconds))
        seen = tx.one(
            "SELECT body_hash, run_id FROM rc_idempotency "
            "WHERE api_key = ? AND idem_key = ? AND created_at >= ?",
            (key.api_key, key.key, cutoff),
        )
        if seen is not None:
            same = hmac.compare_digest(str(seen[0]), key.body_hash)
            return ("replayed" if same else "conflict"), int(seen[1])
        run_id = self._insert_run(tx, run, ts, now)
        n = tx.run(
            "INSERT INTO rc_idempotency (api_key, idem_key, body_hash, run_id, created_at) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (api_key, idem_key) DO UPDATE SET body_hash = excluded.body_hash, "
            "run_id = excluded.run_id, created_at = excluded.created_at "
            "WHERE rc_idempotency.created_at < ?",
            (key.api_key, key.key, key.body_hash, run_id, ts, cutoff),
        )
        if n != 1:  # a concurrent transaction took the key first
            raise _KeyTaken
        return "created", run_id

    def page_runs(
        self,
        *,
        schedule: str | None = None,
        status: RunStatus | None = None,
        template: str | None = None,
        trigger: RunTrigger | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """Runs newest first (by id), only those with an id below ``before`` when it is given:
        a page of the history that stays put while new runs are created."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("schedule", schedule),
            ("status", status),
            ("template", template),
            ("trigger_kind", trigger),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            where.append("id < ?")
            params.append(before)
        sql = f"SELECT {_RUN_COLS} FROM rc_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._tx("read") as tx:
            return self._with_hosts(tx, tx.all(sql, [*params, limit]))

    # -- signed revisions and run provenance

    def signing_keys(self, revisions: Sequence[str]) -> dict[str, str | None]:
        """The key that signed each of ``revisions`` when it was last applied (None: applied
        unsigned, or never applied); the firing loop asks once per revision, not per slot."""
        out: dict[str, str | None] = dict.fromkeys(revisions)
        with self._tx("read") as tx:
            for chunk in _chunks(list(out), 500):
                rows = tx.all(
                    "SELECT revision, signing_key FROM rc_revisions WHERE revision IN "
                    f"({','.join('?' * len(chunk))}) ORDER BY serial",
                    chunk,
                )
                out.update({r[0]: r[1] for r in rows})  # the latest application wins
        return out

    def _claimed_provenance(self, stored: Any, worker_id: str) -> str:
        """A run's provenance JSON with the replica of the worker that claims it."""
        try:
            data = json.loads(stored) if stored else {}
        except (TypeError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        data["replica"] = replica_of(worker_id)
        return _json(data)

    # -- the notification outbox (engine/notifying.py)

    def schedule_notify(self, names: Sequence[str]) -> dict[str, tuple[Any, str | None]]:
        """The ``spec.notify`` value (parsed JSON, None when absent or empty) and the template
        of the applied schedules ``names`` (those that exist), a few hundred names per query:
        the notifications of a recovery after an outage concern thousands of schedules, whose
        bodies need not travel. A body is parsed (by the database) only when it may hold
        ``notify`` entries: bodies are stored as compact JSON, where an empty list is
        ``"notify":[]``; the template comes from the schedule's firing row."""
        out: dict[str, tuple[Any, str | None]] = {}
        rows_have_it = self._schema_version >= _FIRING_SCHEMA
        template = (
            f"COALESCE(f.template, {self._template_expr})" if rows_have_it else self._template_expr
        )
        join = " LEFT JOIN rc_firing f ON f.schedule = o.name" if rows_have_it else ""
        notify = self._notify_expr
        with self._tx("read") as tx:
            for chunk in _chunks(list(dict.fromkeys(names)), 500):
                rows = tx.all(
                    f"SELECT o.name, CASE WHEN o.body NOT LIKE ? OR o.body LIKE ? THEN {notify} "
                    f"END, {template} FROM rc_objects o{join} WHERE o.kind = 'Schedule' AND "
                    f"o.name IN ({','.join('?' * len(chunk))}){self._valid_body}",
                    ['%"notify":[]%', '%"notify":[{%', *chunk],
                )
                for name, entries, of in rows:
                    if isinstance(entries, str):  # SQLite: the JSON text
                        entries = json.loads(entries)
                    out[name] = (entries or None, of if isinstance(of, str) else None)
        return out

    def _write_outbox(
        self,
        tx: Tx,
        rows: Sequence[OutboxWrite],
        marks: Sequence[NotifyMark],
        now: datetime,
    ) -> int:
        """Set ``marks`` and insert ``rows`` (those whose mark did not change are left out);
        how many rows were written. A mark changes when its stored fingerprint differs: the
        upsert's WHERE makes that the database's decision, so two replicas reporting the same
        drift write one notification."""
        ts = self._ts(as_utc(now, "now"))
        changed: set[str] = set()
        for m in marks:
            n = tx.run(
                "INSERT INTO rc_notify_marks (mark_key, fingerprint, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (mark_key) DO UPDATE SET fingerprint = excluded.fingerprint, "
                "updated_at = excluded.updated_at "
                "WHERE rc_notify_marks.fingerprint <> excluded.fingerprint",
                (m.key, m.fingerprint, ts),
            )
            if n:
                changed.add(m.key)
        kept = [r for r in rows if r.mark is None or r.mark in changed]
        for r in kept:
            check_literal(r.event, NotifyEventName, "notification event")
        for chunk in _chunks(kept, 100):  # one statement (one round trip) per 100 rows
            tx.run(
                "INSERT INTO rc_outbox (delivery_id, event, channel, schedule, template, run_id, "
                "payload, status, attempts, next_attempt_at, created_at) VALUES "
                + ",".join(["(?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)"] * len(chunk)),
                [
                    v
                    for r in chunk
                    for v in (
                        r.delivery_id,
                        r.event,
                        r.channel,
                        r.schedule,
                        r.template,
                        r.run_id,
                        _json(dict(r.payload)),
                        ts,
                        ts,
                    )
                ],
            )
        return len(kept)

    def write_notifications(
        self, rows: Sequence[OutboxWrite], marks: Sequence[NotifyMark], now: datetime
    ) -> int:
        """Write outbox rows (gated by ``marks``) on their own: for events whose state change
        is not a store write of ours (missed slots, a decision made elsewhere). Returns how
        many rows were written."""
        if not rows and not marks:
            return 0
        with self._tx("write") as tx:
            return self._write_outbox(tx, rows, marks, now)

    def _outbox(self, r: tuple[Any, ...]) -> OutboxRecord:
        return OutboxRecord(
            id=int(r[0]),
            delivery_id=r[1],
            event=r[2],
            channel=r[3],
            schedule=r[4],
            template=r[5],
            run_id=None if r[6] is None else RunId(int(r[6])),
            payload=self._json_of(r[7], "an outbox payload"),
            status=r[8],
            attempts=int(r[9]),
            next_attempt_at=self._dt(r[10]),
            last_error=r[11],
            claimed_by=r[12],
            claim_expires=self._odt(r[13]),
            created_at=self._dt(r[14]),
            sent_at=self._odt(r[15]),
        )

    def claim_notifications(
        self, claimer: str, limit: int, claim_seconds: float, now: datetime
    ) -> list[OutboxRecord]:
        """Claim up to ``limit`` due notifications for ``claimer`` (status ``sending`` until
        ``claim_expires``; each claim counts one attempt): pending rows whose next attempt is
        due, and rows whose sender's claim expired (it died while sending: the same
        delivery id goes out again). Safe between replicas: one UPDATE over a sub-select
        that skips rows another sender has locked (PostgreSQL ``FOR UPDATE SKIP LOCKED``;
        SQLite has one writer), so no row is claimed twice while its claim holds."""
        ts = self._ts(as_utc(now, "now"))
        until, until_p = self._lease_until(now, claim_seconds)
        at, at_p = self._now_sql(now)
        with self._tx("write") as tx:
            rows = tx.all(
                f"UPDATE rc_outbox SET status = 'sending', claimed_by = ?, "
                f"claim_expires = {until}, attempts = attempts + 1 WHERE id IN ("
                "SELECT id FROM rc_outbox WHERE (status = 'pending' AND next_attempt_at <= ?) "
                f"OR (status = 'sending' AND claim_expires < {at}) "
                f"ORDER BY next_attempt_at, id LIMIT ?{self._skip_locked}) "
                f"RETURNING {_OUTBOX_COLS}",
                [claimer, until_p, ts, *at_p, limit],
            )
        return sorted((self._outbox(r) for r in rows), key=lambda o: o.id)

    def mark_notification_sent(self, row_id: int, claimer: str, now: datetime) -> bool:
        """A claimed notification was delivered; False when the claim was not ours any more."""
        with self._tx("write") as tx:
            n = tx.run(
                "UPDATE rc_outbox SET status = 'sent', sent_at = ?, claimed_by = NULL, "
                "claim_expires = NULL, last_error = NULL "
                "WHERE id = ? AND status = 'sending' AND claimed_by = ?",
                (self._ts(as_utc(now, "now")), row_id, claimer),
            )
        return n == 1

    def retry_notification(
        self,
        row_id: int,
        claimer: str,
        error: str,
        next_attempt_at: datetime | None,
        now: datetime,
    ) -> bool:
        """A delivery attempt failed: try again at ``next_attempt_at``, or give up (``failed``)
        when it is None. ``error`` is one line (never a secret). False when not ours any more."""
        with self._tx("write") as tx:
            n = tx.run(
                "UPDATE rc_outbox SET status = ?, last_error = ?, next_attempt_at = ?, "
                "claimed_by = NULL, claim_expires = NULL "
                "WHERE id = ? AND status = 'sending' AND claimed_by = ?",
                (
                    "failed" if next_attempt_at is None else "pending",
                    error[:1000],
                    self._ts(as_utc(next_attempt_at or now, "next attempt")),
                    row_id,
                    claimer,
                ),
            )
        return n == 1

    def list_notifications(
        self, status: OutboxStatus | None = None, limit: int = 50
    ) -> list[OutboxRecord]:
        """Notifications, newest first (``status="failed"``: the ones that gave up, for the API
        and the dashboard)."""
        sql = f"SELECT {_OUTBOX_COLS} FROM rc_outbox"
        params: list[Any] = []
        if status is not None:
            check_literal(status, OutboxStatus, "notification status")
            sql += " WHERE status = ?"
            params.append(status)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._tx("read") as tx:
            rows = tx.all(sql, [*params, limit])
        return [self._outbox(r) for r in rows]

    def notification_counts(self) -> dict[str, int]:
        """How many notifications are in each status (every status present, 0 when none): the
        ``failed`` count is what a metric and an alert watch."""
        with self._tx("read") as tx:
            rows = tx.all("SELECT status, COUNT(*) FROM rc_outbox GROUP BY status")
        counts = {"pending": 0, "sending": 0, "sent": 0, "failed": 0}
        counts.update({r[0]: int(r[1]) for r in rows})
        return counts


_APPROVAL_COLS = "schedule, content_hash, user_name, decision, at, reason, via, revision"
_UPSERT_APPROVAL = (
    "INSERT INTO rc_approvals (schedule, content_hash, user_name, decision, at, reason, via, "
    "revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (schedule, content_hash, user_name) "
    "DO UPDATE SET decision = excluded.decision, at = excluded.at, reason = excluded.reason, "
    "via = excluded.via, revision = excluded.revision"
)


_SLOT_TRIGGERS = frozenset({"schedule", "catch-up"})


class _SharedFields(NamedTuple):
    """The fields of the run records of one group of :meth:`SqlStore._insert_fired_runs`."""

    template: str
    commit: str | None
    variables: Mapping[str, JsonValue]
    targets: Mapping[str, JsonValue]
    simulate: bool
    requested_by: str | None
    retry_of: RunId | None
    untrusted: tuple[str, ...]
    provenance: Mapping[str, JsonValue]


class _RowMemo:
    """Conversions shared by the runs of one :meth:`SqlStore.record_fires` call: a burst's runs
    share their slot instant and (by schedules of one shape) their variables and targets, so
    each is converted once. Keys are the objects' ids; each entry keeps its objects alive, so
    no id is reused while the call lasts (a mapping may change between calls)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._ts: dict[datetime, Any] = {}
        self._jts: dict[datetime, Any] = {}
        self._utc: dict[datetime, datetime] = {}
        self._vars: dict[tuple[int, int], tuple[dict[str, Any], str, object, object]] = {}
        self._targets: dict[int, tuple[dict[str, Any], str, object]] = {}
        self._untrusted: dict[int, tuple[tuple[str, ...], str, object]] = {}
        self._provenance: dict[int, tuple[str, object]] = {}

    def utc(self, value: datetime, what: str = "instant") -> datetime:
        got = self._utc.get(value)  # equal instants are equal keys, whatever their zone
        if got is None:
            got = self._utc[value] = as_utc(value, what)
        return got

    def ts(self, value: datetime, what: str) -> Any:
        got = self._ts.get(value)
        if got is None:
            got = self._ts[value] = self.store._ts(as_utc(value, what))
        return got

    def _variables(self, run: NewRun) -> tuple[dict[str, Any], str, object, object]:
        got = self._vars.get((id(run.variables), id(run.sensitive)))
        if got is None:
            stored = _stored_variables(run)
            got = (stored, _json(stored), run.variables, run.sensitive)
            self._vars[(id(run.variables), id(run.sensitive))] = got
        return got

    def _target(self, run: NewRun) -> tuple[dict[str, Any], str, object]:
        got = self._targets.get(id(run.targets))
        if got is None:
            plain = dict(run.targets)
            got = self._targets[id(run.targets)] = (plain, _json(plain), run.targets)
        return got

    def _untrusted_of(self, run: NewRun) -> tuple[tuple[str, ...], str, object]:
        got = self._untrusted.get(id(run.untrusted))
        if got is None:
            names = tuple(sorted(run.untrusted))
            got = self._untrusted[id(run.untrusted)] = (names, _json(names), run.untrusted)
        return got

    def _provenance_of(self, run: NewRun) -> str:
        """The JSON of a provenance mapping, once per mapping: every slot of a schedule (and
        every schedule with the same provenance) shares one."""
        got = self._provenance.get(id(run.provenance))
        if got is None:
            got = self._provenance[id(run.provenance)] = (
                _json(dict(run.provenance)),
                run.provenance,
            )
        return got[0]

    def variables(self, run: NewRun) -> dict[str, Any]:
        return dict(self._variables(run)[0])

    def targets(self, run: NewRun) -> dict[str, Any]:
        return dict(self._target(run)[0])

    def untrusted(self, run: NewRun) -> tuple[str, ...]:
        return self._untrusted_of(run)[0]

    def jts(self, value: datetime, what: str) -> Any:
        """:meth:`ts` as it goes into JSON rows (:meth:`SqlStore._json_ts`), once per instant."""
        got = self._jts.get(value)
        if got is None:
            got = self._jts[value] = self.store._json_ts(self.ts(value, what))
        return got

    def shared_run_values(self, run: NewRun) -> tuple[Any, ...]:
        """The values of ``_SHARED_RUN_COLS`` for ``run`` (equal for the runs of one shape)."""
        return (
            run.template,
            run.commit,
            None if run.not_before is None else self.ts(run.not_before, "not_before"),
            self._variables(run)[1],
            self._target(run)[1],
            run.simulate,
            run.requested_by,
            run.retry_of,
            self._untrusted_of(run)[1],
            self._provenance_of(run),
        )


def _firing_row(
    name: str, serial: int, body: str, state: str | None, reason: str | None
) -> tuple[Any, ...] | None:
    """The values of ``_FIRING_COLS`` but the revision and time, or None when the body lacks
    what firing needs."""
    try:
        f = firing_spec(body)
    except (ValueError, KeyError, TypeError):
        return None
    return (name, serial, state, reason, *f.fields(), f.shape)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _stored_variables(run: NewRun) -> dict[str, Any]:
    """A run's variables as stored: the sensitive ones only as the placeholder."""
    return {
        k: (SENSITIVE_PLACEHOLDER if k in run.sensitive else v) for k, v in run.variables.items()
    }
