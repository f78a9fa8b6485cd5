"""The on-disk parse cache: per-blob loader results in one SQLite file. I/O.

Keys are Git blob SHAs, so one file's results are reused by every revision and every path
that holds the same contents. Entries are tagged with a fingerprint of the loader's source
code, so a new version of reconciler never reads results of an older one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import reconciler


@lru_cache(maxsize=1)
def fingerprint() -> str:
    """A hash of the code that produces cached results (models and loading)."""
    root = Path(reconciler.__file__).parent
    h = hashlib.sha256(reconciler.__version__.encode())
    for sub in ("model", "loading", "scheduling"):
        for f in sorted((root / sub).glob("*.py")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


class SqliteParseCache:
    """``blob SHA -> bytes``; failures to open or write make it a silent no-op cache."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / "parse-cache.sqlite"
        self.version = fingerprint()
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, version TEXT, data BLOB)"
            )
            self._db = db
        except (sqlite3.Error, OSError):
            self._db = None

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        if self._db is None:
            return {}
        wanted = list(keys)
        out: dict[str, bytes] = {}
        try:
            for i in range(0, len(wanted), 900):
                chunk = wanted[i : i + 900]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, data FROM blobs WHERE version = ? AND key IN ({marks})",
                    (self.version, *chunk),
                ).fetchall()
                out.update(rows)
        except sqlite3.Error:
            return out
        return out

    def put_many(self, items: Mapping[str, bytes]) -> None:
        if self._db is None or not items:
            return
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO blobs (key, version, data) VALUES (?, ?, ?)",
                [(k, self.version, v) for k, v in items.items()],
            )
            self._db.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
