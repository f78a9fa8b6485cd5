"""The PostgreSQL state store (for several replicas). The only user of psycopg.

Concurrency: a write to the applied objects locks the ``rc_meta`` row (``SELECT ... FOR UPDATE``)
before it compares the serial, so two applies serialise: the second waits (at most
``lock_timeout``, PostgreSQL's own ``lock_timeout``) and then fails the compare-and-swap with
StateConflict. Workers claim runs with ``FOR UPDATE SKIP LOCKED``. Schema migrations take a
transaction-scoped advisory lock. Every transaction is all or nothing: a connection that dies
mid-way leaves nothing applied (StateUnavailable; the next call reconnects).

For a caller that only reads (``readonly=True``) every transaction after the schema check (and
the migration a new or older schema gets, as on every open) is read-only
(``default_transaction_read_only``), so a bug can never write.

Instants are ``timestamptz``; the session time zone is UTC. Tables live in the connection's
current schema (``search_path``), all prefixed ``rc_``, so a database can be shared.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any, Literal

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from reconciler.errors import StateConflict, StateCorrupt, StateError, StateUnavailable
from reconciler.stores._sql import JsonKind, Mode, SqlStore, Tx
from reconciler.stores.base import DEFAULT_LOCK_TIMEOUT, DEFAULT_LOG_CAP, redact

log = logging.getLogger("reconciler.state")

#: pg_advisory_xact_lock key for migrations ("RCN1").
MIGRATION_LOCK_KEY = 0x52434E31
#: Session advisory locks of running runs: this base plus the run id (one key space of ours).
RUN_LOCK_BASE = 0x52434E31 << 32
#: A run whose lock has been free this long (seen by the same reaper) lost its process.
RUN_LOCK_GRACE = 10.0
CONNECT_TIMEOUT = 10


@lru_cache(maxsize=512)
def _q(sql: str) -> str:
    return sql.replace("?", "%s")


_JSON_TYPES = {"text": "text", "int": "bigint", "bool": "boolean", "ts": "timestamptz"}


class _PgTx:
    __slots__ = ("_cur",)

    def __init__(self, cur: psycopg.Cursor[tuple[Any, ...]]) -> None:
        self._cur = cur

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self._cur.execute(_q(sql), params)
        return self._cur.fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cur.execute(_q(sql), params)
        return self._cur.fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cur.execute(_q(sql), params)
        return self._cur.rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cur.executemany(_q(sql), rows)


class PostgresStore(SqlStore):
    """The state in a PostgreSQL database. ``migrate_to`` stops at an older schema."""

    backend: Literal["sqlite", "postgresql"] = "postgresql"
    _lock_row = " FOR UPDATE"
    _skip_locked = " FOR UPDATE SKIP LOCKED"
    _db_clock = True
    _server_now = "now()"

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        log_cap: int = DEFAULT_LOG_CAP,
        migrate_to: int | None = None,
        readonly: bool = False,
    ) -> None:
        super().__init__(lock_timeout=lock_timeout, log_cap=log_cap, readonly=readonly)
        self._url = url
        self._shown = redact(url)
        try:
            self._password = conninfo_to_dict(url).get("password")
        except psycopg.Error:
            self._password = None
        self._lock = threading.RLock()
        self._held: set[int] = set()
        self._free_since: dict[int, float] = {}
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        try:
            self._connection()
            self._migrate(migrate_to)
            if readonly:
                self._connection().execute("SET default_transaction_read_only = on")
        except BaseException:
            self.close()
            raise

    def _clean(self, message: str) -> str:
        text = redact(message.strip().splitlines()[0] if message.strip() else message)
        if self._password:
            text = text.replace(str(self._password), "***")
        return text

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._conn = None
        try:
            params = conninfo_to_dict(self._url)
        except psycopg.Error as e:
            raise StateUnavailable(
                f"the state URL {self._shown} is not a valid PostgreSQL URL: {self._clean(str(e))}"
            ) from e
        params.setdefault("connect_timeout", CONNECT_TIMEOUT)
        params.setdefault("application_name", "reconciler")
        try:
            conn = psycopg.connect(make_conninfo("", **params), autocommit=True)
            conn.execute("SET TIME ZONE 'UTC'")
            conn.execute(f"SET lock_timeout = '{int(self.lock_timeout * 1000)}ms'")
            if self.readonly and self._schema_version:  # reconnecting after the migration
                conn.execute("SET default_transaction_read_only = on")
            if self._deferred:  # see SqlStore.defer_flush
                conn.execute("SET synchronous_commit = off")
            for run_id in sorted(self._held):  # a new session: take our runs' locks again
                conn.execute("SELECT pg_advisory_lock(%s)", (RUN_LOCK_BASE + run_id,))
        except psycopg.Error as e:
            raise StateUnavailable(
                f"cannot reach the PostgreSQL state at {self._shown}: {self._clean(str(e))}"
            ) from e
        self._conn = conn
        return conn

    # -- run locks: a session advisory lock per running run, held by the store that claimed it
    # and freed by the server when that session ends (the process died). A reaper treats a run
    # as gone only when its lock stayed free for RUN_LOCK_GRACE seconds across its passes, so
    # a restart of the server (every session, hence every lock, gone for a moment while the
    # workers reconnect and take their locks again) abandons nothing.

    def _hold_run(self, run_id: int) -> bool:
        with self._lock:
            if run_id in self._held:
                return False
            self._connection().execute("SELECT pg_advisory_lock(%s)", (RUN_LOCK_BASE + run_id,))
            self._held.add(run_id)
            return True

    def _release_run(self, run_id: int) -> None:
        with self._lock:
            if run_id not in self._held:
                return
            self._held.discard(run_id)
            conn = self._conn
            if conn is not None and not conn.closed and not conn.broken:
                with suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (RUN_LOCK_BASE + run_id,))

    def _process_gone(self, run_id: int, worker: str) -> bool:
        with self._lock:
            if run_id in self._held:
                return False
            try:
                conn = self._connection()
                got = conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (RUN_LOCK_BASE + run_id,)
                ).fetchone()
                if got is None or not got[0]:
                    self._free_since.pop(run_id, None)
                    return False
                conn.execute("SELECT pg_advisory_unlock(%s)", (RUN_LOCK_BASE + run_id,))
            except (psycopg.Error, StateError):
                return False
            first = self._free_since.setdefault(run_id, time.monotonic())
            return time.monotonic() - first >= RUN_LOCK_GRACE

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()  # ends the session: the locks of runs not finished go too
                self._conn = None
            self._held.clear()

    def _location(self) -> str:
        return self._shown

    def _apply_deferred(self) -> None:
        with self._lock:
            if self._conn is not None and not self._conn.closed:
                self._conn.execute("SET synchronous_commit = off")

    _json_rows = "jsonb_array_elements(CAST(? AS jsonb)) AS j(value)"
    _notify_expr = "CAST(o.body AS jsonb)->'spec'->'notify'"
    _template_expr = "CAST(o.body AS jsonb)->'spec'->>'template'"
    _valid_body = ""

    def _refresh_statistics(self, tables: Sequence[str]) -> None:
        try:
            with self._tx("write") as tx:
                tx.run(f"ANALYZE {', '.join(tables)}")
        except StateError as e:
            log.warning("could not refresh the planner's statistics of %s: %s", self._shown, e)

    def _json_col(self, index: int, kind: JsonKind) -> str:
        return f"CAST(j.value->>{index} AS {_JSON_TYPES[kind]})"

    def _json_ts(self, stored: Any) -> Any:
        return None if stored is None else stored.isoformat()

    def _type_map(self) -> dict[str, str]:
        return {
            "ID": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "TS": "TIMESTAMPTZ",
            "BOOL": "BOOLEAN",
            "BLOB": "BYTEA",
            "INT": "BIGINT",
        }

    def _table_names(self, tx: Tx) -> set[str]:
        rows = tx.all("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {r[0] for r in rows}

    def _foreign_tables(self, tables: set[str]) -> list[str]:
        # Other applications may share the database; only our prefix without our header is bad.
        return sorted(t for t in tables if t.startswith("rc_"))

    @contextmanager
    def _tx(self, mode: Mode) -> Iterator[Tx]:
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    if mode == "migrate":
                        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                    yield _PgTx(cur)
            except StateError:
                raise
            except (
                psycopg.errors.LockNotAvailable,
                psycopg.errors.SerializationFailure,
                psycopg.errors.DeadlockDetected,
            ) as e:
                raise StateConflict(
                    f"another writer holds the state at {self._shown}; gave up waiting after "
                    f"{self.lock_timeout:g} s ({self._clean(str(e))})"
                ) from e
            except psycopg.errors.ReadOnlySqlTransaction as e:
                raise StateUnavailable(
                    f"cannot write the state at {self._shown}: it was opened for reading only"
                ) from e
            except psycopg.errors.DataError as e:  # e.g. a body that is not JSON, cast
                raise StateCorrupt(
                    f"the PostgreSQL state at {self._shown} holds or was given a value it "
                    f"cannot read: {self._clean(str(e))}"
                ) from e
            except psycopg.errors.IntegrityError as e:
                raise StateConflict(
                    f"the state at {self._shown} refused the write: {self._clean(str(e))}"
                ) from e
            except psycopg.OperationalError as e:
                self._drop_connection()
                raise StateUnavailable(
                    f"lost the connection to the PostgreSQL state at {self._shown}: "
                    f"{self._clean(str(e))}"
                ) from e
            except psycopg.InterfaceError as e:
                self._drop_connection()
                raise StateUnavailable(
                    f"the connection to the PostgreSQL state at {self._shown} is unusable: "
                    f"{self._clean(str(e))}"
                ) from e

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()
