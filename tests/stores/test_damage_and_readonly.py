"""A damaged state is refused with one clear line naming what is damaged; a state opened for
reading only never writes, also not in a directory nobody may write. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.errors import StateCorrupt, StateUnavailable
from reconciler.stores import NewRun, ObjectWrite, open_store
from reconciler.stores._sql import LATEST_VERSION
from reconciler.stores.sqlite import SqliteStore

from .conftest import raw_sql

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"


def _applied(url: str) -> None:
    with open_store(url) as s:
        body = json.dumps({"kind": "JobTemplate", "metadata": {"name": "backup"}})
        s.apply_changes(0, SHA, [ObjectWrite("JobTemplate", "backup", "h", body)], [], NOW)
        s.create_run(NewRun("backup", "cli", SHA), NOW)


def test_an_object_whose_body_was_edited_into_something_else_is_named_as_damaged(
    state_url: str,
) -> None:
    _applied(state_url)
    raw_sql(state_url, "UPDATE rc_objects SET body = '[]'")
    with open_store(state_url) as s:
        with pytest.raises(StateCorrupt) as err:
            s.get_object("JobTemplate", "backup")
        text = str(err.value)
        assert 'JobTemplate "backup"' in text and "'[]'" in text and "\n" not in text
        # listings hand bodies out as they are: their callers parse them (and say so)
        assert s.list_objects()[0].body == "[]"


def test_a_run_whose_variables_were_edited_by_hand_is_named_as_damaged(state_url: str) -> None:
    _applied(state_url)
    raw_sql(state_url, "UPDATE rc_runs SET variables = 'oops'")
    with open_store(state_url) as s, pytest.raises(StateCorrupt, match=r"run 1 .*'oops'"):
        s.list_runs()


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("UPDATE rc_meta SET applied_at = 'yesterday'", "rc_meta.applied_at"),
        ("UPDATE rc_meta SET applied_at = '2025-03-01T12:00:00'", "rc_meta.applied_at"),
        ("UPDATE rc_objects SET updated_at = 'yesterday'", 'JobTemplate "backup"'),
        ("UPDATE rc_runs SET created_at = 'yesterday'", "run 1"),
        ("UPDATE rc_revisions SET applied_at = 'yesterday'", "rc_revisions"),
    ],
)
def test_an_instant_edited_by_hand_in_sqlite_is_named_as_damaged(
    tmp_path: Path, sql: str, names: str
) -> None:
    # PostgreSQL stores instants as timestamptz: no such value can get in there.
    url = str(tmp_path / "state.db")
    _applied(url)
    raw_sql(url, sql)
    with open_store(url) as s:
        with pytest.raises(StateCorrupt) as err:
            s.info()
            s.list_objects()
            s.list_runs()
            s.history()
        text = str(err.value)
    assert names in text and "not an instant" in text and "\n" not in text


def test_a_state_opened_for_reading_reads_and_refuses_to_write(state_url: str) -> None:
    _applied(state_url)
    with open_store(state_url, readonly=True) as s:
        assert s.serial() == 1 and [r.id for r in s.list_runs()] == [1]
        with pytest.raises(StateUnavailable, match="opened for reading only"):
            s.apply_changes(1, SHA, [], [("JobTemplate", "backup")], NOW)
        with pytest.raises(StateUnavailable, match="opened for reading only"):
            s.create_run(NewRun("backup", "cli", SHA), NOW)
    with open_store(state_url) as s:
        assert s.serial() == 1 and len(s.list_runs()) == 1


def test_reading_an_older_schema_upgrades_it_first_as_every_open_does(state_url: str) -> None:
    if state_url.startswith("postgresql"):
        from reconciler.stores.postgres import PostgresStore

        PostgresStore(state_url, migrate_to=1).close()
    else:
        SqliteStore(Path(state_url), migrate_to=1).close()
    with open_store(state_url, readonly=True) as s:
        assert s.info().schema_version == LATEST_VERSION
        assert s.list_runs() == []
        with pytest.raises(StateUnavailable, match="opened for reading only"):
            s.create_run(NewRun("backup", "cli", SHA), NOW)


def test_reading_an_empty_postgresql_database_sees_an_empty_state(pg_url: str) -> None:
    with open_store(pg_url, readonly=True) as s:
        assert s.serial() == 0 and s.list_runs() == []


def test_a_sqlite_state_opened_for_reading_only_must_exist(tmp_path: Path) -> None:
    with pytest.raises(StateUnavailable, match="there is no state"):
        open_store(tmp_path / "nope.db", readonly=True)
    assert not (tmp_path / "nope.db").exists()


def test_a_file_in_the_way_of_the_state_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(StateUnavailable) as err:
        open_store(tmp_path / "plain-file" / "sub" / "state.db")
    text = str(err.value)
    assert f"{tmp_path / 'plain-file'} is a file, not a directory" in text
    assert "\n" not in text
