"""SQLite: a second connection in the same process must not drop the first one's locks.

POSIX record locks belong to the process, and closing any descriptor of a file drops all of
them. The state's header check once opened and closed the database file for every new
connection; with ``serve`` holding several connections, a ``reconciler status`` in another
process could then take itself for the last user, checkpoint and delete the WAL, and every
later commit of the daemon went to a deleted file."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from reconciler.stores import Replica
from reconciler.stores.sqlite import SqliteStore

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)

READ = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
    "print(sorted(r[0] for r in c.execute('SELECT id FROM rc_replicas'))); c.close()"
)


def _ids(path: Path) -> str:
    return subprocess.run(
        [sys.executable, "-c", READ, str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_commit_after_another_process_read_the_state_is_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    first = SqliteStore(path)
    first.beat_replica(Replica("one", "h", 1, NOW, NOW, 1))
    second = SqliteStore(path)  # a second connection of this process (a worker, the API)
    try:
        assert _ids(path) == "['one']"  # another process reads and closes its connection
        first.beat_replica(Replica("two", "h", 1, NOW, NOW, 1))
        # a third process must see the commit made after the reader left
        assert _ids(path) == "['one', 'two']"
    finally:
        second.close()
        first.close()
    assert _ids(path) == "['one', 'two']"
