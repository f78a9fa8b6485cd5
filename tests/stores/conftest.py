"""Fixtures of the state-store contract suite: one fresh state per test, on every backend.

SQLite lives in ``tmp_path``. PostgreSQL (``pg_database``, ``pg_url`` in ``tests/conftest.py``)
is the machine's server (``RECONCILER_TEST_PG``, default
``postgresql://postgres@127.0.0.1:5432/postgres``): the session creates a database
``reconciler_test_<random>`` and drops it at the end; each test gets its own schema in it. If
PostgreSQL cannot be reached the tests fail (CI guarantees it is there): they never skip.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg


def raw_sql(url: str, sql: str) -> list[tuple[object, ...]]:
    """Run SQL behind the store's back (to fake damage or an old or new version)."""
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(sql)
            return list(cur.fetchall()) if cur.description else []
    with sqlite3.connect(url) as sconn:
        return list(sconn.execute(sql).fetchall())


def state_dump(url: str) -> str:
    """Every byte the state holds, as text, to search for things that must not be there."""
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
            ]
            parts = []
            for t in tables:
                for row in conn.execute(f'SELECT t::text FROM "{t}" AS t'):
                    parts.append(str(row[0]))
            for row in conn.execute("SELECT encode(data, 'escape') FROM rc_run_logs"):
                parts.append(str(row[0]))
            return "\n".join(parts)
    data = b""
    for suffix in ("", "-wal", "-journal"):
        p = Path(url + suffix)
        if p.exists():
            data += p.read_bytes()
    return data.decode("latin-1")


def age_leases(store: object, seconds: float) -> None:
    """On PostgreSQL, where leases are judged by the database's own clock, move every lease
    ``seconds`` into the past (as if that much time had passed on the database server). On
    SQLite, leases follow the instants the caller passes, so tests pass a later instant and
    this does nothing."""
    if getattr(store, "backend", None) != "postgresql":
        return
    url = store._url  # type: ignore[attr-defined]
    raw_sql(
        url,
        f"UPDATE rc_runs SET lease_expires = lease_expires - interval '{float(seconds)} seconds' "
        "WHERE lease_expires IS NOT NULL",
    )


def lease_is(value: datetime | None, base: datetime, seconds: float, store: object) -> bool:
    """A lease given at ``base`` for ``seconds``: exactly ``base + seconds`` on SQLite (the
    caller's instants); on PostgreSQL that many seconds from the database's clock now."""
    if value is None:
        return False
    if getattr(store, "backend", None) != "postgresql":
        return value == base + timedelta(seconds=seconds)
    return abs((value - datetime.now(UTC)).total_seconds() - seconds) < 10
