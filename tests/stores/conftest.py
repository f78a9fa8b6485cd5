"""Fixtures of the state-store contract suite: one fresh state per test, on every backend.

SQLite lives in ``tmp_path``. PostgreSQL is the machine's server (``RECONCILER_TEST_PG``, default
``postgresql://postgres@127.0.0.1:5432/postgres``): the session creates a database
``reconciler_test_<random>`` and drops it at the end; each test gets its own schema in it. If
PostgreSQL cannot be reached the tests fail (CI guarantees it is there): they never skip.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from reconciler.stores import StateStore, open_store

ADMIN_URL = os.environ.get("RECONCILER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]


def _with_database(url: str, dbname: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{dbname}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh database for this test session; its URL. Dropped at the end."""
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as e:
        pytest.fail(
            f"PostgreSQL is required for the state-store tests and is not reachable at "
            f"{ADMIN_URL}: {e}. Start it with: pg_ctlcluster --skip-systemctl-redirect "
            "$(ls /etc/postgresql) main start"
        )
    name = f"reconciler_test_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(ADMIN_URL, name)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The URL of an empty schema of its own in the session database."""
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{pg_database}?options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def state_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where a fresh state goes: a SQLite path or a PostgreSQL URL (nothing created yet)."""
    if backend == "sqlite":
        return str(tmp_path / "state.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    s = open_store(state_url, lock_timeout=10)
    yield s
    s.close()


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
