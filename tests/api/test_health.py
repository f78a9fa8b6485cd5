"""``GET /healthz`` of a real ``serve`` (no key needed): 503 with a reason (an error object)
while the state cannot be reached, or while firing is behind its fire times, and 200 again once
that is over. Both for real: a PostgreSQL database that refuses connections and whose sessions
were terminated; a SQLite state whose write lock a test holds, so the firing loop cannot
record."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from reconciler.stores import open_store
from tests.conftest import ADMIN_URL
from tests.daemon.conftest import Serve, ledger_slots, make_repo, schedule, until

from .promutil import error_code, http


def health(s: Serve) -> tuple[int, str]:
    """(status, the error code or "ok")."""
    status, _, body = http(s.url + "/healthz")
    if status == 200:
        assert json.loads(body) == {"status": "ok"}
        return status, "ok"
    return status, error_code(body)


@pytest.fixture
def own_database() -> Iterator[tuple[str, str]]:
    """A PostgreSQL database of this test's own (it is made unreachable): (name, URL)."""
    name = f"reconciler_health_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(ADMIN_URL)
    yield name, urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=30) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_healthz_is_503_store_unreachable_while_postgresql_refuses_the_state_then_200(
    tmp_path: Path, own_database: tuple[str, str], serves: list[Serve]
) -> None:
    name, url = own_database
    repo = make_repo(tmp_path, {"idle": schedule("idle", '{cron: "0 3 * * *"}')})
    s = Serve(repo, url, "--workers", "1", "--poll", "1h")
    serves.append(s)
    until(lambda: health(s) == (200, "ok"), 20, "healthy")
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        status, _, body = http(s.url + "/healthz")
        assert status == 503 and error_code(body) == "store-unreachable", body
        assert name in json.loads(body)["error"]["message"]  # which state, never a password
        assert health(s) == (503, "store-unreachable")  # it stays so: no connection is let in
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    until(lambda: health(s) == (200, "ok"), 20, "healthy again")
    assert "Traceback" not in s.log.read_text()


def test_healthz_is_503_firing_behind_while_the_sqlite_write_lock_is_held_then_200(
    tmp_path: Path, serves: list[Serve], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a slot found more than 2 s late counts as missed: firing is unhealthy past that
    monkeypatch.setenv("RECONCILER_TEST_LATE_SECONDS", "2")
    repo = make_repo(tmp_path, {"tick": schedule("tick", "{every: 1s}")})
    state = str(tmp_path / "state.sqlite")
    s = Serve(repo, state, "--workers", "1", "--poll", "1h")
    serves.append(s)
    with open_store(state) as store:
        until(lambda: len(ledger_slots(store, "tick")) >= 2, 20, "firing")
        assert health(s) == (200, "ok")
        locker = sqlite3.connect(state, isolation_level=None, timeout=10)
        try:
            locker.execute("BEGIN IMMEDIATE")  # every writer waits, readers go on (WAL)
            held = time.monotonic()
            recorded = len(ledger_slots(store, "tick"))
            until(lambda: health(s) == (503, "firing-behind"), 15, "firing behind")
            assert time.monotonic() - held > 2  # not before it is 2 s behind
            status, _, body = http(s.url + "/healthz")
            assert status == 503 and "behind" in json.loads(body)["error"]["message"]
            assert len(ledger_slots(store, "tick")) == recorded  # it could not record
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        until(lambda: health(s) == (200, "ok"), 20, "healthy again")
        until(lambda: len(ledger_slots(store, "tick")) > recorded, 10, "firing again")
    assert "Traceback" not in s.log.read_text()
