"""Shared pytest set-up: the ``--update-golden`` option, an isolated parse cache, and a fresh
PostgreSQL database per session for every suite that runs against both state backends.

PostgreSQL is the machine's server (``RECONCILER_TEST_PG``, default
``postgresql://postgres@127.0.0.1:5432/postgres``). If it cannot be reached the tests that need
it fail (CI guarantees it is there): they never skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from reconciler.stores import StateStore, open_store

ADMIN_URL = os.environ.get("RECONCILER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite the expected output of golden tests instead of comparing with it.",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the on-disk parse cache of in-process CLI runs out of the user's home."""
    path = tmp_path_factory.mktemp("reconciler-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("RECONCILER_CACHE_DIR", str(path))
    yield path
    mp.undo()


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
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(ADMIN_URL, name)
    finally:
        # a fresh connection: a test may have restarted the server meanwhile
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=30) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_pg_schema(database_url: str) -> str:
    """The URL of a new, empty schema in ``database_url`` (one state each)."""
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{database_url}?options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The URL of an empty schema of its own in the session database."""
    return new_pg_schema(pg_database)


@pytest.fixture
def new_pg_state(pg_database: str) -> Callable[[], str]:
    """A factory of fresh PostgreSQL states (for tests that need several, e.g. Hypothesis)."""
    return lambda: new_pg_schema(pg_database)


#: Every contract and engine test that takes ``backend``, ``state_url`` or ``store`` runs on
#: both state stores; PostgreSQL must be reachable (CI makes sure of it), never skipped.
BACKENDS = ["sqlite", "postgresql"]


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
