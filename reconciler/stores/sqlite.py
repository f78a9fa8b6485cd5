"""The SQLite state store (the default): one file, WAL mode. The only user of ``sqlite3``.

Concurrency: every write is a ``BEGIN IMMEDIATE`` transaction, so writers from any number of
processes queue on SQLite's single write lock for at most ``lock_timeout`` seconds (the busy
timeout) and then fail with StateConflict; readers never block in WAL mode. ``synchronous=FULL``:
a commit survives a power cut (at most once must hold after a crash too), except on a connection
that :meth:`~reconciler.stores._sql.SqlStore.defer_flush` (the firing loop's; see there).

Reading only (``readonly=True``, for the commands that only read): the file must exist; the
connection runs with ``PRAGMA query_only`` and works in a directory nobody may write. There
SQLite cannot create the WAL index beside the file, so when no write-ahead log is there either
(then no writer has the state open, and none can start in that directory) the file is read as
``immutable``; a log without its index is refused with one line. A state at an older schema is
upgraded first by a short writing connection, as any open does, or refused with one line when
its file cannot be written.

Instants are stored as fixed-width UTC ISO-8601 text (``2025-01-31T02:30:00.000000+00:00``), which
sorts and compares like the instants themselves. The file carries SQLite's ``application_id``
``0x52434E31`` ("RCN1") besides the ``rc_meta`` header.

Run locks: beside the database, ``<file>-runlocks`` holds one lock per running run (an
open-file-description byte-range lock on the byte at the run's id), taken by the store that
claims the run and kept until it finishes the run or closes. The kernel frees it when the
process dies, however it dies, so :meth:`~reconciler.stores._sql.SqlStore.reap_runs` can tell
at once that a run claimed on this machine lost its process. The file holds no data; it must
not be deleted while runs are running.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import socket
import sqlite3
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from reconciler.errors import StateConflict, StateCorrupt, StateError, StateUnavailable
from reconciler.stores._sql import LATEST_VERSION, Mode, SqlStore, Tx
from reconciler.stores.base import DEFAULT_LOCK_TIMEOUT, DEFAULT_LOG_CAP

APPLICATION_ID = 0x52434E31
_MAGIC = b"SQLite format 3\x00"
log = logging.getLogger("reconciler.state")
_FLOCK = struct.Struct("hhqqi4x")  # struct flock of 64-bit Linux
_WORKER = re.compile(r"^(?P<host>[^:/]+):(?P<pid>\d+)(?:[:/].*)?$")


def _byte_lock(fd: int, command: int, kind: int, offset: int) -> int:
    """``fcntl`` with an OFD lock request on the one byte at ``offset``; the resulting
    ``l_type`` (F_UNLCK from F_OFD_GETLK: no other open file holds a lock there)."""
    out = fcntl.fcntl(fd, command, _FLOCK.pack(kind, os.SEEK_SET, offset, 1, 0))
    return int(_FLOCK.unpack(out)[0])


# Files this process has open through SQLite, with a count. POSIX record locks belong to the
# process, and closing *any* descriptor of a file drops all of them: reading the header of a
# state that another connection of this process holds would drop that connection's locks, and
# a reader in another process could then checkpoint and delete the WAL under it, losing every
# later commit. So the header is read only by the first opener.
_OPEN: dict[str, int] = {}
_OPEN_LOCK = threading.Lock()
#: The writers of this process to one file queue on its lock before they ask SQLite for its
#: write lock. SQLite's busy handler retries a taken lock after sleeping 1, 2, 5, 10 ms and
#: more; with the daemon's workers committing (and flushing) in the same process as its firing
#: loop, a fire that met a worker's commit slept that long. A thread lock hands over the
#: moment the commit ends. Writers of other processes still meet SQLite's lock and its busy
#: timeout. Kept while the file is open here (``_OPEN``).
_WRITERS: dict[str, threading.RLock] = {}

#: Commits of a connection that defers its flush between two checkpoints of the log, which it
#: hands to a thread of its own. SQLite's automatic checkpoint (after 1,000 pages of log) runs
#: in the thread whose commit crosses the mark, and makes that commit take milliseconds: on the
#: firing loop's connection, that was the slowest fire of every hundred.
CHECKPOINT_EVERY = 100


class _Checkpointer:
    """A thread with its own connection that checkpoints the write-ahead log when asked.
    ``PASSIVE``: it copies what no reader still needs and never waits for a writer nor holds
    one up; what it leaves is copied at the next request."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.wanted = threading.Event()
        self.stopping = False
        self.thread: threading.Thread | None = None
        #: why the thread could not open its connection (then the committing connection
        #: takes SQLite's automatic checkpoints back: see :meth:`SqliteStore._tx`)
        self.failed: str | None = None

    def request(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
            self.thread.start()
        self.wanted.set()

    def stop(self) -> None:
        self.stopping = True
        self.wanted.set()
        if self.thread is not None:
            self.thread.join(10)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as e:
            self.failed = str(e)
            return
        try:
            while True:
                self.wanted.wait()
                self.wanted.clear()
                if self.stopping:
                    return
                with suppress(sqlite3.Error):  # busy or gone: the next request tries again
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()


class _SqliteTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._conn.execute(sql, params).fetchall()
        return rows

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)


class SqliteStore(SqlStore):
    """The state in a SQLite file. ``migrate_to`` stops at an older schema (tests, tools)."""

    backend: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        log_cap: int = DEFAULT_LOG_CAP,
        migrate_to: int | None = None,
        readonly: bool = False,
    ) -> None:
        super().__init__(lock_timeout=lock_timeout, log_cap=log_cap, readonly=readonly)
        self.path = Path(path)
        self._lock = threading.RLock()
        self._locks_path = Path(f"{self.path}-runlocks")
        self._locks_fd: int | None = None
        self._held: set[int] = set()
        self._key = os.path.realpath(self.path)
        with _OPEN_LOCK:
            if not _OPEN.get(self._key):
                self._check_header()
            _OPEN[self._key] = _OPEN.get(self._key, 0) + 1
            self._writer = _WRITERS.setdefault(self._key, threading.RLock())
        self._registered = True
        self._conn: sqlite3.Connection | None = None
        #: the checkpoints of a connection that defers its flush (None: SQLite's own)
        self._checkpointer: _Checkpointer | None = None
        self._commits = 0
        if readonly:
            self._conn = self._connect_for_reading()
            self._upgrade_for_reading(migrate_to)
        else:
            self._make_directory()
            try:
                self._conn = self._connect(self.path)
            except (OSError, sqlite3.Error) as e:
                raise StateUnavailable(self._cannot("open", str(e))) from e
        try:
            with self._translate():
                conn = self._conn
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA synchronous = FULL")
                app = conn.execute("PRAGMA application_id").fetchone()[0]
                if app not in (0, APPLICATION_ID):
                    raise StateCorrupt(
                        f"{self.path} is not a reconciler state: it is the SQLite file of "
                        f"another application (application_id {app:#x})"
                    )
            # Check (and create or upgrade) before anything writes to a file that may not be ours.
            self._migrate(migrate_to)
            if readonly:
                return
            with self._translate():
                if app == 0:
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StateUnavailable(
                        f"cannot use the state {self.path}: SQLite refused WAL mode ({mode})"
                    )
        except BaseException:
            self.close()
            raise

    def _connect(self, target: Path | str, uri: bool = False) -> sqlite3.Connection:
        return sqlite3.connect(
            target,
            timeout=self.lock_timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=uri,
        )

    def _make_directory(self) -> None:
        """Create the state's directory, or say in one line why it cannot be."""
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            blocker = next((p for p in (parent, *parent.parents) if p.is_file()), parent)
            raise StateUnavailable(
                f"cannot create the state {self.path}: {blocker} is a file, not a directory"
            ) from None
        except OSError as e:
            raise StateUnavailable(
                f"cannot create the state {self.path}: cannot create its directory {parent} "
                f"({_reason(e)})"
            ) from None

    def _connect_for_reading(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise StateUnavailable(f"there is no state at {self.path}")
        try:
            return self._reader(self.path)
        except sqlite3.OperationalError as e:
            if "unable to open" not in str(e) and "readonly" not in str(e):
                raise StateUnavailable(self._cannot("read", str(e))) from e
            first = e
        wal, shm = Path(f"{self.path}-wal"), Path(f"{self.path}-shm")
        if not wal.exists() and not _writable(self.path.parent):
            # No write-ahead log: no writer has the state open, and none can start in a
            # directory it cannot write, so reading the file as it is cannot miss a write.
            try:
                return self._reader(self.path.absolute().as_uri() + "?immutable=1", uri=True)
            except sqlite3.Error as e:
                raise StateUnavailable(self._cannot("read", str(e))) from e
        if wal.exists() and not shm.exists():
            raise StateUnavailable(
                f"cannot read the state {self.path}: its write-ahead log {wal.name} is there "
                "without its index, which cannot be made in that directory; open the state "
                "once where it can be written"
            ) from first
        raise StateUnavailable(self._cannot("read", str(first))) from first

    def _upgrade_for_reading(self, target: int | None) -> None:
        """Bring an older schema up to date with a writing connection, then read again."""
        try:
            with self._tx("read") as tx:
                current = self._schema_of(tx)
                pending = self._pending_migrations(
                    tx, current, LATEST_VERSION if target is None else target
                )
        except BaseException:
            self.close()
            raise
        if not pending:
            return
        self.close()
        try:
            SqliteStore(self.path, lock_timeout=self.lock_timeout, migrate_to=target).close()
        except StateUnavailable as e:
            raise StateUnavailable(
                f"{e}; it was written by an older version of reconciler and must be upgraded "
                "before it can be read"
            ) from None
        self._conn = self._connect_for_reading()

    def _reader(self, target: Path | str, uri: bool = False) -> sqlite3.Connection:
        """A connection that never writes, opened as far as the WAL index (which may fail)."""
        conn = self._connect(target, uri)
        try:
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA schema_version").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _cannot(self, verb: str, text: str) -> str:
        """One line for a file SQLite could not open or write, saying why when we can tell."""
        why = _unwritable(self.path)
        if why is not None and verb != "read":
            return f"cannot write the state {self.path}: {why}"
        return f"cannot {verb} the state {self.path}: {text}"

    def _check_header(self) -> None:
        try:
            with self.path.open("rb") as f:
                head = f.read(len(_MAGIC))
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing there yet (a file in the way of its directory is said later)
        except IsADirectoryError as e:
            raise StateUnavailable(f"cannot open the state {self.path}: it is a directory") from e
        except OSError as e:
            raise StateUnavailable(f"cannot open the state {self.path}: {e}") from e
        if head and head != _MAGIC:
            raise StateCorrupt(
                f"{self.path} is not a reconciler state: it is not a SQLite database"
            )

    def close(self) -> None:
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._locks_fd is not None:
                os.close(self._locks_fd)  # releases the locks of runs we did not finish
                self._locks_fd = None
            self._held.clear()
            if getattr(self, "_registered", False):
                self._registered = False
                with _OPEN_LOCK:
                    left = _OPEN.get(self._key, 1) - 1
                    if left:
                        _OPEN[self._key] = left
                    else:
                        _OPEN.pop(self._key, None)
                        _WRITERS.pop(self._key, None)

    # -- run locks (see the module docstring)

    def _locks(self, create: bool) -> int | None:
        if self._locks_fd is None:
            try:
                flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
                self._locks_fd = os.open(self._locks_path, flags | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                return None
            except PermissionError:  # a file of another user: a read lock needs no more
                self._locks_fd = os.open(self._locks_path, os.O_RDONLY | os.O_CLOEXEC)
        return self._locks_fd

    def _hold_run(self, run_id: int) -> bool:
        with self._lock:
            if run_id in self._held:
                return False
            try:
                fd = self._locks(create=True)
                assert fd is not None
                _byte_lock(fd, fcntl.F_OFD_SETLK, fcntl.F_RDLCK, run_id)
            except OSError as e:
                raise StateUnavailable(
                    f"cannot take the lock of run {run_id} in {self._locks_path}: {e.strerror}"
                ) from e
            self._held.add(run_id)
            return True

    def _release_run(self, run_id: int) -> None:
        with self._lock:
            if run_id in self._held and self._locks_fd is not None:
                _byte_lock(self._locks_fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, run_id)
            self._held.discard(run_id)

    def _process_gone(self, run_id: int, worker: str) -> bool:
        # ``host:pid`` (reconciler run) or ``host:pid:replica/wN/claim`` (a serve worker)
        m = _WORKER.match(worker)
        if m is None or m["host"] != socket.gethostname():
            return False  # claimed elsewhere: only its lease can tell
        with self._lock:
            if run_id in self._held:
                return False
            try:
                fd = self._locks(create=False)
                if fd is None:
                    return False  # no run ever took a lock here (an older version)
                return _byte_lock(fd, fcntl.F_OFD_GETLK, fcntl.F_WRLCK, run_id) == fcntl.F_UNLCK
            except OSError:
                return False

    def _location(self) -> str:
        return str(self.path)

    def _refresh_statistics(self, tables: Sequence[str]) -> None:
        """Nothing: without statistics SQLite's planner still takes the index for a lookup
        by name, which is what PostgreSQL's needs them for."""

    def _apply_deferred(self) -> None:
        """``synchronous=NORMAL``, and the checkpoints of the log in a thread of their own
        (:data:`CHECKPOINT_EVERY`), so that no commit of this connection runs one."""
        with self._lock, self._translate():
            if self._conn is not None:
                self._conn.execute("PRAGMA synchronous = NORMAL")
                self._conn.execute("PRAGMA wal_autocheckpoint = 0")
                if self._checkpointer is None:
                    self._checkpointer = _Checkpointer(self.path, self.lock_timeout)

    def _insert_new_runs(
        self, tx: Tx, sql: str, params: Sequence[Any], keys: Sequence[tuple[str, Any]]
    ) -> list[int]:
        """One statement under the write lock gives its rows consecutive ids (AUTOINCREMENT
        never reuses one), in the order of the JSON rows: no ids to read back."""
        written = tx.run(f"{sql} ORDER BY j.key", params)
        row = tx.one("SELECT last_insert_rowid()")
        assert row is not None and written == len(keys), (written, len(keys))
        last = int(row[0])
        return list(range(last - written + 1, last + 1))

    def _ids_in(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        # the ids of :meth:`_insert_new_runs`: consecutive
        return f"{column} BETWEEN ? AND ?", [ids[0], ids[-1]]

    def _ts(self, value: datetime) -> Any:
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def _type_map(self) -> dict[str, str]:
        return {
            "ID": "INTEGER PRIMARY KEY AUTOINCREMENT",
            "TS": "TEXT",
            "BOOL": "INTEGER",
            "BLOB": "BLOB",
            "INT": "INTEGER",
        }

    def _table_names(self, tx: Tx) -> set[str]:
        rows = tx.all(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        return {r[0] for r in rows}

    def _foreign_tables(self, tables: set[str]) -> list[str]:
        return sorted(tables)

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except StateError:
            raise
        except sqlite3.OperationalError as e:
            text = str(e)
            if "locked" in text or "busy" in text:
                raise StateConflict(
                    f"another process is writing the state {self.path}; gave up waiting after "
                    f"{self.lock_timeout:g} s"
                ) from e
            if self.readonly and "readonly" in text:  # query_only refused a write
                raise StateUnavailable(
                    f"cannot write the state {self.path}: it was opened for reading only"
                ) from e
            if "readonly" in text or "unable to open" in text:
                raise StateUnavailable(self._cannot("use", text)) from e
            raise StateUnavailable(f"cannot use the state {self.path}: {text}") from e
        except sqlite3.IntegrityError as e:
            raise StateConflict(f"the state {self.path} refused the write: {e}") from e
        except sqlite3.DatabaseError as e:
            raise StateCorrupt(f"{self.path} is not a reconciler state: {e}") from e

    @contextmanager
    def _tx(self, mode: Mode) -> Iterator[Tx]:
        begin = {"read": "BEGIN", "migrate": "BEGIN EXCLUSIVE"}.get(mode, "BEGIN IMMEDIATE")
        with self._lock, self._translate():
            conn = self._conn
            if conn is None:
                raise StateUnavailable(f"the state {self.path} is closed")
            writing = mode != "read"
            if writing and not self._writer.acquire(timeout=self.lock_timeout):
                raise StateConflict(
                    f"another writer of this process holds the state {self.path}; gave up "
                    f"waiting after {self.lock_timeout:g} s"
                )
            try:
                conn.execute(begin)
                try:
                    yield _SqliteTx(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                if writing:
                    self._writer.release()
            if self._checkpointer is not None and writing:
                self._commits += 1
                if self._checkpointer.failed is not None:
                    # without its thread the log would grow without end: back to SQLite's own
                    log.warning(
                        "the checkpoints of %s go back to SQLite's automatic ones: %s",
                        self.path,
                        self._checkpointer.failed,
                    )
                    conn.execute("PRAGMA wal_autocheckpoint = 1000")
                    self._checkpointer = None
                elif self._commits % CHECKPOINT_EVERY == 0:
                    self._checkpointer.request()


def _reason(e: OSError) -> str:
    if e.errno == errno.EROFS:
        return "read-only file system"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return e.strerror or str(e)


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def _unwritable(path: Path) -> str | None:
    """Why the state file or its directory cannot be written, or None when both can."""
    for p, what in ((path, "the file"), (path.parent, "its directory")):
        if p.exists() and not _writable(p):
            try:
                ro = bool(os.statvfs(p).f_flag & os.ST_RDONLY)
            except OSError:
                ro = False
            return f"{what} {p} is {'on a read-only file system' if ro else 'not writable'}"
    return None
