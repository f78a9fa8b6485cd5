"""The state-store contract: every test runs against SQLite and against PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import (
    StateConflict,
    StateCorrupt,
    StateTooNew,
    StateUnavailable,
    UsageError,
)
from reconciler.stores import (
    SENSITIVE_PLACEHOLDER,
    Approval,
    DriftRecord,
    HostResult,
    NewRun,
    ObjectWrite,
    StateStore,
    hash_secret,
    open_store,
)
from reconciler.stores._sql import LATEST_VERSION, MIGRATIONS
from reconciler.stores.postgres import PostgresStore
from reconciler.stores.sqlite import SqliteStore

from . import _procs
from .conftest import age_leases, lease_is, raw_sql, state_dump

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"


def obj(name: str, tag: str = "v1", kind: str = "Schedule", **kw: object) -> ObjectWrite:
    return ObjectWrite(kind, name, f"hash-{tag}", json.dumps({"name": name, "tag": tag}), **kw)  # type: ignore[arg-type]


def sched_run(schedule: str, slot: datetime, **kw: object) -> NewRun:
    return NewRun("backup", "schedule", SHA, schedule=schedule, slot=slot, **kw)  # type: ignore[arg-type]


def cli_run(**kw: object) -> NewRun:
    return NewRun("backup", "cli", SHA, **kw)  # type: ignore[arg-type]


def open_backend(url: str, **kw: object) -> StateStore:
    if url.startswith("postgresql"):
        return PostgresStore(url, **kw)  # type: ignore[arg-type]
    return SqliteStore(Path(url), **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# opening, migrations, foreign and damaged states


def test_a_new_state_starts_empty_at_the_latest_schema_with_serial_zero(
    store: StateStore, backend: str
) -> None:
    info = store.info()
    assert (info.serial, info.revision, info.applied_at) == (0, None, None)
    assert info.schema_version == LATEST_VERSION
    assert info.backend == backend
    assert store.list_objects() == [] and store.history() == [] and store.list_runs() == []


def test_reopening_a_state_keeps_its_contents_and_runs_no_migration_again(
    state_url: str,
) -> None:
    with open_store(state_url) as s:
        s.apply_changes(0, SHA, [obj("a")], [], NOW)
    migrations = raw_sql(state_url, "SELECT version FROM rc_migrations ORDER BY version")
    with open_store(state_url) as s:
        assert s.serial() == 1
        assert [o.name for o in s.list_objects()] == ["a"]
    assert raw_sql(state_url, "SELECT version FROM rc_migrations ORDER BY version") == migrations
    assert [r[0] for r in migrations] == sorted(m.version for m in MIGRATIONS)


def test_an_older_schema_is_upgraded_on_open_and_keeps_its_objects(state_url: str) -> None:
    old = open_backend(state_url, migrate_to=1)
    assert old.info().schema_version == 1
    old.close()
    # written as a schema-1 program wrote them: only the columns that schema has
    for name in ("a", "b"):
        raw_sql(
            state_url,
            "INSERT INTO rc_objects (kind, name, content_hash, body, revision, managed, state, "
            "state_reason, serial, created_at, updated_at) VALUES ('Schedule', "
            f"'{name}', 'h', '{{}}', '{SHA}', TRUE, 'active', NULL, 1, "
            "'2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
        )
    raw_sql(state_url, "UPDATE rc_meta SET serial = 1")
    assert raw_sql(state_url, "SELECT count(*) FROM rc_migrations") == [(1,)]
    with open_store(state_url) as s:
        assert s.info().schema_version == LATEST_VERSION
        assert s.serial() == 1
        assert [o.name for o in s.list_objects("Schedule")] == ["a", "b"]
        assert s.create_run(cli_run(), NOW) is not None  # the new tables work


def test_a_state_from_a_newer_version_is_refused_with_a_clear_message(state_url: str) -> None:
    open_store(state_url).close()
    raw_sql(state_url, "UPDATE rc_meta SET schema_version = 99")
    with pytest.raises(StateTooNew, match=r"newer version of reconciler \(state schema 99; "):
        open_store(state_url)


def test_a_state_whose_header_names_another_product_is_refused(state_url: str) -> None:
    open_store(state_url).close()
    raw_sql(state_url, "UPDATE rc_meta SET product = 'something-else'")
    with pytest.raises(StateCorrupt, match="is not a reconciler state"):
        open_store(state_url)


def test_a_text_file_is_refused_as_not_a_reconciler_state(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 20)
    with pytest.raises(StateCorrupt, match=r"notes.txt is not a reconciler state: .*not a SQLite"):
        open_store(path)
    assert path.read_text().startswith("these are my notes")


def test_a_sqlite_file_of_another_application_is_refused_and_left_untouched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, state BLOB)")
    before = path.read_bytes()
    with pytest.raises(StateCorrupt, match=r"is not a reconciler state: .*another application"):
        open_store(f"sqlite://{path}")
    assert path.read_bytes() == before


def test_a_sqlite_file_with_a_foreign_application_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA application_id = 1234")
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StateCorrupt, match="another application"):
        open_store(path)


def test_a_postgresql_database_with_our_tables_but_no_header_is_refused(pg_url: str) -> None:
    raw_sql(pg_url, "CREATE TABLE rc_objects (x int)")
    with pytest.raises(StateCorrupt, match="holds tables of another application"):
        open_store(pg_url)


def test_a_postgresql_database_shared_with_other_applications_is_fine(pg_url: str) -> None:
    raw_sql(pg_url, "CREATE TABLE someone_elses_table (x int)")
    with open_store(pg_url) as s:
        assert s.serial() == 0


def test_state_urls_name_sqlite_paths_or_postgresql(tmp_path: Path) -> None:
    with open_store(f"sqlite://{tmp_path}/a.db") as s:
        assert s.info().location == f"{tmp_path}/a.db"
    with open_store(tmp_path / "nested" / "b.db") as s:
        assert s.info().backend == "sqlite"
    with pytest.raises(UsageError, match="unknown scheme 'mysql'"):
        open_store("mysql://root:pw@localhost/db")
    with pytest.raises(UsageError, match="sqlite:///absolute/path"):
        open_store("sqlite://relative.db")


def test_an_unreachable_postgresql_is_unavailable_and_the_password_is_never_shown() -> None:
    for url in (
        "postgresql://postgres:hunter2-secret@127.0.0.1:1/x",
        "postgresql://postgres:hunter2-secret@127.0.0.1:5432/no_such_database_here",
    ):
        with pytest.raises(StateUnavailable) as err:
            open_store(url)
        assert "hunter2-secret" not in str(err.value)
        assert "postgres:***@127.0.0.1" in str(err.value)
        assert err.value.transient


def test_a_postgresql_state_shows_its_url_without_the_password(pg_database: str) -> None:
    url = pg_database.replace("postgres@", "postgres:pw-in-url-7f3a@", 1)  # trust auth
    with open_store(url) as s:
        assert s.info().location == pg_database.replace("postgres@", "postgres:***@", 1)
        assert "pw-in-url-7f3a" not in repr(s.info())


def test_a_directory_is_not_a_usable_state(tmp_path: Path) -> None:
    with pytest.raises(StateUnavailable, match="is a directory"):
        open_store(tmp_path)


# --------------------------------------------------------------------------------------------
# applied objects, serial, history


def test_apply_creates_updates_and_deletes_in_one_new_serial_and_records_the_revision(
    store: StateStore,
) -> None:
    internal = obj("location", kind="_Source")  # the reconciler's own: not counted
    s1 = store.apply_changes(
        0, "rev1", [obj("a"), obj("b"), obj("t", kind="JobTemplate"), internal], [], NOW
    )
    later = NOW + timedelta(minutes=5)
    s2 = store.apply_changes(
        s1,
        "rev2",
        [obj("a", "v2"), obj("c"), obj("location", "v2", kind="_Source")],
        [("Schedule", "b"), ("Schedule", "zz")],
        later,
    )
    assert (s1, s2) == (1, 2)
    a = store.get_object("Schedule", "a")
    assert a is not None
    assert (a.content_hash, a.revision, a.serial) == ("hash-v2", "rev2", 2)
    assert json.loads(a.body) == {"name": "a", "tag": "v2"}
    assert (a.created_at, a.updated_at) == (NOW, later)
    assert store.get_object("Schedule", "b") is None
    assert [o.name for o in store.list_objects("Schedule")] == ["a", "c"]
    assert [(o.kind, o.name) for o in store.list_objects()] == [
        ("JobTemplate", "t"),
        ("Schedule", "a"),
        ("Schedule", "c"),
        ("_Source", "location"),
    ]
    info = store.info()
    assert (info.serial, info.revision, info.applied_at) == (2, "rev2", later)
    h = store.history()
    assert [(e.serial, e.revision, e.created, e.updated, e.deleted) for e in h] == [
        (2, "rev2", 1, 1, 1),
        (1, "rev1", 3, 0, 0),
    ]


def test_apply_with_a_stale_serial_is_a_conflict_and_changes_nothing(store: StateStore) -> None:
    store.apply_changes(0, "rev1", [obj("a")], [], NOW)
    with pytest.raises(
        StateConflict, match=r"the state changed since the plan was made \(serial 0, now 1\)"
    ):
        store.apply_changes(0, "rev2", [obj("b")], [("Schedule", "a")], NOW)
    assert [o.name for o in store.list_objects()] == ["a"]
    assert store.serial() == 1 and len(store.history()) == 1


def test_applying_the_same_revision_again_without_changes_keeps_the_serial(
    store: StateStore,
) -> None:
    s = store.apply_changes(0, "rev1", [obj("a")], [], NOW)
    assert store.apply_changes(s, "rev1", [], [], NOW) == s
    assert len(store.history()) == 1
    assert store.apply_changes(s, "rev2", [], [], NOW) == s + 1  # a new revision is recorded


def test_managed_flag_and_schedule_state_are_kept_per_object(store: StateStore) -> None:
    store.apply_changes(
        0,
        "r",
        [
            obj("mine", state="awaiting-approval", state_reason="needs 2 approvals"),
            obj("adopted", managed=False, state="paused"),
        ],
        [],
        NOW,
    )
    mine, adopted = store.get_object("Schedule", "mine"), store.get_object("Schedule", "adopted")
    assert mine is not None and adopted is not None
    assert (mine.managed, mine.state, mine.state_reason) == (
        True,
        "awaiting-approval",
        "needs 2 approvals",
    )
    assert (adopted.managed, adopted.state) == (False, "paused")


def test_changing_an_object_state_bumps_the_serial_and_honours_an_expected_serial(
    store: StateStore,
) -> None:
    s = store.apply_changes(0, "r", [obj("a", state="awaiting-approval")], [], NOW)
    s2 = store.set_object_state("Schedule", "a", "active", None, NOW, expected_serial=s)
    assert s2 == s + 1
    o = store.get_object("Schedule", "a")
    assert o is not None and o.state == "active" and o.serial == s2
    with pytest.raises(StateConflict):
        store.set_object_state("Schedule", "a", "denied", "no", NOW, expected_serial=s)
    with pytest.raises(UsageError, match="no applied Schedule named 'nope'"):
        store.set_object_state("Schedule", "nope", "disabled", "owner removed", NOW)
    with pytest.raises(ValueError, match="object state 'sleeping'"):
        store.set_object_state("Schedule", "a", "sleeping", None, NOW)  # type: ignore[arg-type]
    assert store.serial() == s2


def test_state_counts_count_the_applied_objects_of_a_kind_by_state(store: StateStore) -> None:
    assert store.state_counts() == dict.fromkeys(
        ("active", "paused", "awaiting-approval", "denied", "disabled"), 0
    )
    s = store.apply_changes(
        0,
        "r",
        [
            obj("a", state="awaiting-approval"),
            obj("b", state="awaiting-approval"),
            obj("c", state="active"),
            obj("d", state="paused"),
            obj("t", kind="JobTemplate"),
        ],
        [],
        NOW,
    )
    store.set_object_state("Schedule", "b", "denied", "no", NOW, expected_serial=s)
    counts = store.state_counts("Schedule")
    assert counts == {
        "active": 1,
        "paused": 1,
        "awaiting-approval": 1,
        "denied": 1,
        "disabled": 0,
    }
    assert sum(store.state_counts("JobTemplate").values()) == 1


def test_instants_are_returned_aware_in_utc_whatever_offset_went_in(store: StateStore) -> None:
    berlin = datetime(2025, 3, 30, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    store.apply_changes(0, "r", [obj("a")], [], berlin)
    o = store.get_object("Schedule", "a")
    assert o is not None
    assert o.created_at == berlin and o.created_at.utcoffset() == timedelta(0)
    assert o.created_at.tzinfo is UTC


def test_naive_datetimes_are_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        store.apply_changes(0, "r", [obj("a")], [], datetime(2025, 1, 1))
    assert store.serial() == 0


def test_the_same_object_twice_in_one_apply_is_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="same object twice"):
        store.apply_changes(0, "r", [obj("a"), obj("a", "v2")], [], NOW)
    with pytest.raises(ValueError, match="both to write and to delete"):
        store.apply_changes(0, "r", [obj("a")], [("Schedule", "a")], NOW)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(
            st.sets(st.sampled_from("abcdefgh"), max_size=5),
            st.sets(st.sampled_from("abcdefgh"), max_size=3),
            st.sampled_from(["v1", "v2", "v3"]),
        ),
        max_size=5,
    )
)
def test_the_stored_objects_always_equal_the_applied_changes(
    store: StateStore, steps: list[tuple[set[str], set[str], str]]
) -> None:
    model = {o.name: o.content_hash for o in store.list_objects("Schedule")}
    for writes, deletes, tag in steps:
        deletes = deletes - writes
        serial = store.serial()
        new = store.apply_changes(
            serial,
            tag,
            [obj(n, tag) for n in sorted(writes)],
            [("Schedule", n) for n in sorted(deletes)],
            NOW,
        )
        assert new in (serial, serial + 1)
        model.update({n: f"hash-{tag}" for n in writes})
        for n in deletes:
            model.pop(n, None)
        assert {o.name: o.content_hash for o in store.list_objects("Schedule")} == model


# --------------------------------------------------------------------------------------------
# concurrency


def test_two_processes_applying_at_once_one_wins_and_the_other_gets_a_conflict(
    state_url: str,
) -> None:
    open_store(state_url).close()
    ctx = multiprocessing.get_context("spawn")
    ready, start, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_procs.apply_many, args=(state_url, tag, 3000, ready, start, results))
        for tag in ("left", "right")
    ]
    for p in procs:
        p.start()
    assert sorted(ready.get(timeout=60) for _ in procs) == ["left", "right"]  # both hold serial 0
    start.set()
    outcomes = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    kinds = sorted(o[1] for o in outcomes)
    assert kinds == ["applied", "conflict"], outcomes
    winner = next(o[0] for o in outcomes if o[1] == "applied")
    loser = next(o for o in outcomes if o[1] == "conflict")
    assert "the state changed since the plan was made (serial 0, now 1)" in loser[2]
    with open_store(state_url) as s:
        objects = s.list_objects()
        assert s.serial() == 1 and [h.revision for h in s.history()] == [f"rev-{winner}"]
    assert len(objects) == 3000
    assert {o.content_hash for o in objects} == {f"hash-{winner}"}  # never a mixture


def _hold_write_lock(state_url: str) -> Callable[[], object]:
    """Take the state's write lock from outside the store; return the function releasing it."""
    if state_url.startswith("postgresql"):
        conn = psycopg.connect(state_url)
        conn.execute("SELECT serial FROM rc_meta FOR UPDATE")
        return conn.close
    sconn = sqlite3.connect(state_url, isolation_level=None, check_same_thread=False)
    sconn.execute("BEGIN IMMEDIATE")
    return sconn.close


def test_a_writer_waits_a_bounded_time_for_another_writer_then_gets_a_conflict(
    state_url: str,
) -> None:
    open_store(state_url).close()
    release = _hold_write_lock(state_url)
    try:
        with open_store(state_url, lock_timeout=0.3) as s:
            t0 = time.monotonic()
            with pytest.raises(StateConflict, match=r"gave up waiting after 0\.3 s"):
                s.apply_changes(0, "r", [obj("a")], [], NOW)
            assert 0.25 <= time.monotonic() - t0 < 5
    finally:
        release()
    with open_store(state_url) as s:
        assert s.list_objects() == [] and s.serial() == 0
        assert s.apply_changes(0, "r", [obj("a")], [], NOW) == 1


def test_a_writer_that_waits_for_another_proceeds_once_it_is_released(state_url: str) -> None:
    open_store(state_url).close()
    release = _hold_write_lock(state_url)
    timer = threading.Timer(0.3, release)
    timer.start()
    try:
        with open_store(state_url, lock_timeout=10) as s:
            assert s.apply_changes(0, "r", [obj("a")], [], NOW) == 1
    finally:
        timer.join()


def test_a_postgresql_connection_killed_mid_apply_leaves_nothing_applied(pg_url: str) -> None:
    store = open_store(pg_url)
    # Block the apply after it wrote its objects and before it records the revision.
    blocker = psycopg.connect(pg_url)
    blocker.execute("LOCK TABLE rc_revisions IN EXCLUSIVE MODE")
    outcome: list[BaseException | int] = []

    def apply() -> None:
        try:
            outcome.append(store.apply_changes(0, "r", [obj(f"o{i}") for i in range(500)], [], NOW))
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=apply)
    t.start()
    try:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            pid = None
            for _ in range(200):
                row = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'reconciler' AND wait_event_type = 'Lock'"
                ).fetchone()
                if row:
                    pid = row[0]
                    break
                time.sleep(0.05)
            assert pid is not None, "the apply never reached the blocked step"
            wrote = admin.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.pid = %s AND c.relname = 'rc_objects' AND l.mode = 'RowExclusiveLock' "
                "AND l.granted",
                (pid,),
            ).fetchone()
            assert wrote == (1,), "the apply should be killed after writing its objects"
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        t.join(30)
    finally:
        blocker.rollback()
        blocker.close()
    assert len(outcome) == 1 and isinstance(outcome[0], StateUnavailable), outcome
    assert "lost the connection" in str(outcome[0])
    with open_store(pg_url) as fresh:
        assert fresh.serial() == 0 and fresh.list_objects() == [] and fresh.history() == []
    # The store reconnects on its next call.
    assert store.apply_changes(0, "r", [obj("a")], [], NOW) == 1
    store.close()


# --------------------------------------------------------------------------------------------
# slot ledger


def test_a_slot_is_taken_once_by_a_run_or_a_skip_never_twice(store: StateStore) -> None:
    slot = NOW
    run = store.create_run(sched_run("nightly", slot), NOW)
    assert run is not None and run.slot == slot and run.status == "queued"
    assert store.create_run(sched_run("nightly", slot), NOW) is None
    assert store.skip_slot("nightly", slot, "overlap", NOW, None) is False
    entry = store.get_slot("nightly", slot)
    assert entry is not None and entry.run_id == run.id and entry.skip_reason is None
    # the refused duplicate left no run behind
    assert [r.id for r in store.list_runs()] == [run.id]

    nxt = slot + timedelta(days=1)
    assert store.skip_slot("nightly", nxt, "paused", NOW, "enabled: false") is True
    assert store.create_run(sched_run("nightly", nxt), NOW) is None
    skipped = store.get_slot("nightly", nxt)
    assert skipped is not None and (skipped.run_id, skipped.skip_reason, skipped.detail) == (
        None,
        "paused",
        "enabled: false",
    )
    # the same instant in another offset is the same slot
    same = slot.astimezone(timezone(timedelta(hours=-5)))
    assert store.create_run(sched_run("nightly", same), NOW) is None
    assert [e.slot for e in store.list_slots("nightly")] == [nxt, slot]
    assert [e.slot for e in store.list_slots("nightly", since=nxt)] == [nxt]


def test_the_database_refuses_a_duplicate_slot_row_even_behind_the_store(
    store: StateStore, state_url: str
) -> None:
    store.skip_slot("nightly", NOW, "misfire", NOW, None)
    ts = store.get_slot("nightly", NOW)
    assert ts is not None
    value = (
        "'2025-03-01 12:00:00+00'"
        if state_url.startswith("postgresql")
        else "'2025-03-01T12:00:00.000000+00:00'"
    )
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        raw_sql(
            state_url,
            "INSERT INTO rc_slots (schedule, slot, skip_reason, recorded_at) "
            f"VALUES ('nightly', {value}, 'overlap', {value})",
        )


def test_many_connections_racing_for_one_slot_create_exactly_one_run(state_url: str) -> None:
    open_store(state_url).close()
    stores = [open_store(state_url, lock_timeout=30) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    got: list[object] = []

    def race(s: StateStore) -> None:
        barrier.wait()
        got.append(s.create_run(sched_run("hourly", NOW), NOW))

    threads = [threading.Thread(target=race, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 6 and sum(r is not None for r in got) == 1
    assert len(stores[0].list_runs()) == 1
    for s in stores:
        s.close()


def test_runs_triggered_by_hand_do_not_take_a_slot(store: StateStore) -> None:
    first = store.create_run(sched_run("nightly", NOW), NOW)
    assert first is not None
    retry = store.create_run(
        NewRun("backup", "retry", SHA, schedule="nightly", slot=NOW, retry_of=first.id), NOW
    )
    assert retry is not None and retry.retry_of == first.id and retry.slot == NOW
    assert store.create_run(cli_run(), NOW) is not None
    assert store.create_run(NewRun("backup", "api", SHA, requested_by="ci-key"), NOW) is not None
    entry = store.get_slot("nightly", NOW)
    assert entry is not None and entry.run_id == first.id
    with pytest.raises(ValueError, match="needs a schedule and a slot"):
        store.create_run(NewRun("backup", "catch-up", SHA, schedule="nightly"), NOW)


# --------------------------------------------------------------------------------------------
# runs: claiming, leases, finishing, listing, host results


def test_claiming_from_two_connections_never_hands_out_one_run_twice(state_url: str) -> None:
    setup = open_store(state_url)
    ids = {r.id for r in (setup.create_run(cli_run(), NOW) for _ in range(60)) if r}
    workers = [open_store(state_url, lock_timeout=30) for _ in range(2)]
    claimed: dict[str, list[int]] = {"w0": [], "w1": []}

    def work(name: str, s: StateStore) -> None:
        while (r := s.claim_next_run(name, 60, NOW)) is not None:
            assert r.status == "running" and r.worker == name
            claimed[name].append(r.id)

    threads = [threading.Thread(target=work, args=(f"w{i}", s)) for i, s in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    all_claims = claimed["w0"] + claimed["w1"]
    assert len(all_claims) == len(set(all_claims)), "a run was handed out twice"
    rest = []
    while (r := setup.claim_next_run("sweeper", 60, NOW)) is not None:
        rest.append(r.id)
    assert set(all_claims) | set(rest) == ids
    assert not set(rest) & set(all_claims)
    for s in (*workers, setup):
        s.close()


def test_a_postgresql_claim_skips_a_run_locked_by_another_worker(pg_url: str) -> None:
    with open_store(pg_url) as s:
        first = s.create_run(cli_run(), NOW)
        second = s.create_run(cli_run(), NOW)
        assert first is not None and second is not None
        with psycopg.connect(pg_url) as other:
            other.execute(
                "SELECT id FROM rc_runs WHERE id = %s FOR UPDATE", (first.id,)
            )  # another worker is mid-claim on the oldest run
            got = s.claim_next_run("w", 60, NOW)
            assert got is not None and got.id == second.id
            other.rollback()


def test_a_run_is_claimed_oldest_first_and_not_before_its_time(store: StateStore) -> None:
    later = store.create_run(cli_run(not_before=NOW + timedelta(hours=1)), NOW)
    now_run = store.create_run(cli_run(), NOW)
    assert later is not None and now_run is not None
    got = store.claim_next_run("w", 30, NOW)
    assert got is not None and got.id == now_run.id
    assert got.started_at == NOW and lease_is(got.lease_expires, NOW, 30, store)
    assert store.claim_next_run("w", 30, NOW) is None
    due = store.claim_next_run("w", 30, NOW + timedelta(hours=1))
    assert due is not None and due.id == later.id


def test_leases_are_renewed_by_their_worker_and_expired_ones_are_abandoned(
    store: StateStore,
) -> None:
    a = store.create_run(cli_run(), NOW)
    b = store.create_run(cli_run(), NOW)
    assert a is not None and b is not None
    store.claim_next_run("w1", 30, NOW)
    store.claim_next_run("w2", 30, NOW)
    t = NOW + timedelta(seconds=20)
    assert store.renew_lease(a.id, "w1", 30, t) is True
    assert store.renew_lease(a.id, "w2", 30, t) is False  # not its run
    t2 = NOW + timedelta(seconds=40)
    age_leases(store, 40)  # 40 s pass (on PostgreSQL: on the database's clock) ...
    store.renew_lease(a.id, "w1", 30, t2)  # ... while w1 keeps renewing its lease
    assert [r.id for r in store.expired_runs(t2)] == [b.id]
    assert store.reap_runs(t2) == [b.id]
    gone = store.get_run(b.id)
    assert gone is not None and gone.status == "abandoned" and gone.finished_at == t2
    assert "lease" in (gone.message or "")
    assert store.renew_lease(b.id, "w2", 30, t2) is False
    assert store.reap_runs(t2) == []


def test_a_run_whose_process_died_is_reaped_at_once_on_sqlite_and_by_its_lease_elsewhere(
    state_url: str, backend: str
) -> None:
    with open_store(state_url) as s:
        run = s.create_run(cli_run(), NOW)
        done = s.create_run(cli_run(), NOW)
        foreign = s.create_run(cli_run(), NOW)
    assert run is not None and done is not None and foreign is not None
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=_procs.claim_and_wait, args=(state_url, run.id, results))
    child.start()
    reaper = open_store(state_url, lock_timeout=10)  # any command that opens the state
    try:
        outcome, worker = results.get(timeout=60)
        assert outcome == "claimed"
        assert reaper.reap_runs(NOW) == []  # its process is alive and its lease valid
        # a run finished by its worker, and one claimed on another machine
        me = f"{socket.gethostname()}:{os.getpid()}"
        assert reaper.claim_run(done.id, me, 30, NOW) is not None
        assert reaper.finish_run(done.id, "succeeded", NOW, worker_id=me)
        with open_store(state_url) as elsewhere:
            assert elsewhere.claim_run(foreign.id, "other-host:4242", 30, NOW) is not None
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        after = reaper.reap_runs(NOW)
        if backend == "sqlite":  # its run lock went with the process
            assert after == [run.id]
            dead = reaper.get_run(run.id)
            assert dead is not None and dead.status == "abandoned" and dead.finished_at == NOW
            assert worker in (dead.message or "") and "ended" in (dead.message or "")
        else:  # PostgreSQL keeps no lock per run: the lease tells
            assert after == []
        later = NOW + timedelta(seconds=31)
        age_leases(reaper, 31)
        assert reaper.reap_runs(later) == (
            [foreign.id] if backend == "sqlite" else [run.id, foreign.id]
        )
        kept = reaper.get_run(done.id)
        assert kept is not None and kept.status == "succeeded"
        assert reaper.reap_runs(later) == []
    finally:
        if child.is_alive():
            child.kill()
        child.join(30)
        reaper.close()


def test_finishing_a_run_is_final_and_only_its_worker_may_finish_it(store: StateStore) -> None:
    r = store.create_run(cli_run(), NOW)
    assert r is not None
    store.claim_next_run("w1", 30, NOW)
    assert store.finish_run(r.id, "succeeded", NOW, worker_id="w2") is False
    assert store.finish_run(r.id, "failed", NOW, "2 hosts failed", worker_id="w1") is True
    assert store.finish_run(r.id, "succeeded", NOW) is False
    done = store.get_run(r.id)
    assert done is not None
    assert (done.status, done.message, done.finished_at, done.lease_expires) == (
        "failed",
        "2 hosts failed",
        NOW,
        None,
    )
    q = store.create_run(cli_run(), NOW)
    assert q is not None and store.finish_run(q.id, "cancelled", NOW, "by alice") is True
    with pytest.raises(ValueError, match="not a final run status"):
        store.finish_run(q.id, "running", NOW)


def test_runs_are_listed_newest_first_with_filters_and_a_default_limit_of_50(
    store: StateStore,
) -> None:
    made = []
    for i in range(60):
        run = NewRun(
            "backup" if i % 2 else "patch",
            "schedule",
            SHA,
            schedule="nightly" if i % 2 else "weekly",
            slot=NOW + timedelta(hours=i),
        )
        r = store.create_run(run, NOW + timedelta(minutes=i))
        assert r is not None
        made.append(r.id)
    listed = store.list_runs()
    assert len(listed) == 50 and [r.id for r in listed] == made[::-1][:50]
    nightly = store.list_runs(schedule="nightly", limit=100)
    assert len(nightly) == 30 and all(r.schedule == "nightly" for r in nightly)
    patch = store.list_runs(template="patch", limit=3)
    assert [r.id for r in patch] == [made[58], made[56], made[54]]
    store.claim_next_run("w", 30, NOW)
    assert [r.id for r in store.list_runs(status="running")] == [made[0]]
    last = store.last_runs()
    assert set(last) == {"nightly", "weekly"}
    assert (last["nightly"].id, last["weekly"].id) == (made[59], made[58])
    assert store.get_run(made[5]) is not None and store.get_run(10**9) is None


def test_a_run_keeps_what_it_was_asked_to_do(store: StateStore) -> None:
    run = store.create_run(
        NewRun(
            "deploy",
            "api",
            SHA,
            variables={"version": "1.2.3", "count": 3, "flags": ["a", "b"]},
            targets={"roles": ["web"], "environments": ["prod"]},
            simulate=True,
            requested_by="ci-key",
            message="from the pipeline",
        ),
        NOW,
    )
    assert run is not None
    got = store.get_run(run.id)
    assert got == run
    assert got.variables == {"version": "1.2.3", "count": 3, "flags": ["a", "b"]}
    assert got.targets == {"roles": ["web"], "environments": ["prod"]}
    assert (got.trigger, got.commit, got.simulate, got.requested_by) == ("api", SHA, True, "ci-key")
    assert (got.schedule, got.slot, got.created_at) == (None, None, NOW)


def test_host_results_are_stored_per_server_and_replaced_on_update(store: StateStore) -> None:
    r = store.create_run(cli_run(), NOW)
    assert r is not None
    store.set_host_results(
        r.id,
        [
            HostResult("web1", "ok", ok=5, changed=1),
            HostResult("db1", "unreachable", unreachable=1),
        ],
    )
    store.set_host_results(r.id, [HostResult("web1", "failed", ok=5, changed=1, failed=1)])
    got = store.get_run(r.id)
    assert got is not None
    assert got.hosts == (
        HostResult("db1", "unreachable", unreachable=1),
        HostResult("web1", "failed", ok=5, changed=1, failed=1),
    )
    assert store.list_runs()[0].hosts == got.hosts


# --------------------------------------------------------------------------------------------
# logs


def test_a_log_reads_back_in_order_and_from_any_offset(store: StateStore) -> None:
    r = store.create_run(cli_run(), NOW)
    assert r is not None
    parts = ["PLAY [all] ***\n", "TASK [ping] ***\n", "ok: [web1] → grüße\n"]
    for p in parts:
        assert store.append_log(r.id, p) is True
    full = store.read_log(r.id)
    assert full.text == "".join(parts) and full.offset == 0
    assert full.next_offset == len("".join(parts).encode())
    tail = store.read_log(r.id, len(parts[0].encode()) + 5)
    assert tail.text == "".join(parts)[len(parts[0]) + 5 :]
    assert store.read_log(r.id, full.next_offset).text == ""
    store.append_log(r.id, "PLAY RECAP\n")  # a follower picks up from next_offset
    follow = store.read_log(r.id, full.next_offset)
    assert follow.text == "PLAY RECAP\n"
    page = store.read_log(r.id, 0, limit=10)
    assert page.text == parts[0][:10] and page.next_offset == 10
    with pytest.raises(UsageError, match="no run 999999"):
        store.read_log(999999)


def test_a_log_over_its_cap_is_truncated_once_with_a_marker(state_url: str) -> None:
    with open_store(state_url, log_cap=100) as s:
        r = s.create_run(cli_run(), NOW)
        assert r is not None
        assert s.append_log(r.id, "a" * 60) is True
        assert s.append_log(r.id, "b" * 60) is False
        assert s.append_log(r.id, "c" * 60) is False
        log = s.read_log(r.id)
        assert log.truncated is True
        assert log.text.startswith("a" * 60 + "b" * 40 + "\n[log truncated")
        assert log.text == (
            "a" * 60 + "b" * 40 + "\n[log truncated: this run's log reached its cap of 100 bytes]\n"
        )
        run = s.get_run(r.id)
        assert run is not None and run.log_truncated and run.log_size == log.next_offset


def test_a_log_cut_at_its_cap_does_not_split_a_character(state_url: str) -> None:
    with open_store(state_url, log_cap=5) as s:
        r = s.create_run(cli_run(), NOW)
        assert r is not None
        assert s.append_log(r.id, "abcdé") is False  # é is two bytes: 6 > 5
        log = s.read_log(r.id)
        assert log.text.startswith("abcd\n[log truncated") and "\ufffd" not in log.text


# --------------------------------------------------------------------------------------------
# secrets, drift, approvals, API keys, leases


def test_an_api_key_secret_is_stored_only_as_its_sha256(store: StateStore, state_url: str) -> None:
    secret = "rk_live_5f1e0c3b9d7a4e2f8c6b1a0d9e8f7a6b"
    key = store.create_api_key("ci", secret, ["trigger", "read"], ["backup"], "alice", NOW)
    assert key.key_hash == hash_secret(secret) and key.key_hash.startswith("sha256:")
    assert (key.scopes, key.templates, key.user) == (("read", "trigger"), ("backup",), "alice")
    assert store.find_api_key(secret) == key
    assert store.find_api_key(secret + "x") is None
    store.close()
    dump = state_dump(state_url)
    assert "rk_live_" not in dump and secret not in dump
    assert hash_secret(secret).removeprefix("sha256:") in dump  # the dump does see the data


def test_sensitive_variables_are_stored_as_a_placeholder_never_their_value(
    store: StateStore, state_url: str
) -> None:
    run = store.create_run(
        cli_run(
            variables={"user": "deploy", "db_password": "Tr0ub4dor&3-very-secret"},
            sensitive=frozenset({"db_password"}),
        ),
        NOW,
    )
    assert run is not None
    assert run.variables == {"user": "deploy", "db_password": SENSITIVE_PLACEHOLDER}
    store.append_log(run.id, "TASK [connect] ok\n")
    store.close()
    dump = state_dump(state_url)
    assert "Tr0ub4dor" not in dump
    assert "TASK [connect]" in dump and "deploy" in dump


def test_revoked_api_keys_are_not_found_and_key_names_are_unique(store: StateStore) -> None:
    store.create_api_key("ci", "s" * 32, ["trigger"], [], None, NOW)
    with pytest.raises(StateConflict, match="an API key named 'ci' already exists"):
        store.create_api_key("ci", "t" * 32, ["read"], [], None, NOW)
    with pytest.raises(ValueError, match="scope 'admin'"):
        store.create_api_key("x", "u" * 32, ["admin"], [], None, NOW)  # type: ignore[list-item]
    assert store.revoke_api_key("ci", NOW) is True
    assert store.revoke_api_key("ci", NOW) is False
    assert store.find_api_key("s" * 32) is None
    (listed,) = store.list_api_keys()
    assert listed.name == "ci" and listed.revoked_at == NOW


def test_drift_keeps_history_and_shows_the_latest_per_server_and_template(
    store: StateStore,
) -> None:
    r = store.create_run(cli_run(), NOW)
    assert r is not None
    store.record_drift(
        [
            DriftRecord("web1", "baseline", r.id, "drifted", {"/etc/motd": "edited"}, NOW),
            DriftRecord("web2", "baseline", r.id, "unknown", {"reason": "unreachable"}, NOW),
        ]
    )
    later = NOW + timedelta(hours=1)
    store.record_drift([DriftRecord("web1", "baseline", None, "in-sync", {}, later)])
    latest = store.list_drift()
    assert [(d.server, d.state, d.at) for d in latest] == [
        ("web1", "in-sync", later),
        ("web2", "unknown", NOW),
    ]
    assert [d.state for d in store.list_drift(server="web1", latest=False)] == [
        "in-sync",
        "drifted",
    ]
    assert store.list_drift(server="web1", latest=False)[1].details == {"/etc/motd": "edited"}
    with pytest.raises(ValueError, match="drift state 'weird'"):
        store.record_drift([DriftRecord("x", "y", None, "weird", {}, NOW)])  # type: ignore[arg-type]


def test_approvals_keep_each_users_latest_decision_per_content_hash(store: StateStore) -> None:
    store.record_approval(Approval("nightly", "h1", "bob", "approve", NOW))
    store.record_approval(Approval("nightly", "h1", "carol", "approve", NOW))
    store.record_approval(
        Approval("nightly", "h1", "bob", "deny", NOW + timedelta(minutes=1), "wrong host")
    )
    store.record_approval(Approval("nightly", "h2", "bob", "approve", NOW))
    h1 = store.list_approvals("nightly", "h1")
    assert sorted((a.user, a.decision, a.reason) for a in h1) == [
        ("bob", "deny", "wrong host"),
        ("carol", "approve", None),
    ]
    assert len(store.list_approvals()) == 3


def test_a_lease_belongs_to_one_owner_until_it_expires(store: StateStore) -> None:
    assert store.acquire_lease("leader", "replica-a", 15, NOW) is True
    assert store.acquire_lease("leader", "replica-b", 15, NOW + timedelta(seconds=5)) is False
    assert store.acquire_lease("leader", "replica-a", 15, NOW + timedelta(seconds=10)) is True
    lease = store.get_lease("leader")
    assert lease is not None and lease.expires == NOW + timedelta(seconds=25)
    assert store.acquire_lease("leader", "replica-b", 15, NOW + timedelta(seconds=26)) is True
    assert store.release_lease("leader", "replica-a") is False
    assert store.release_lease("leader", "replica-b") is True
    assert store.get_lease("leader") is None


def test_a_large_apply_refreshes_the_planner_statistics_on_postgresql(pg_url: str) -> None:
    """With autovacuum off or late, a planner that believes 100,000 schedules to be a few
    rows scans them all for each lookup by name; an apply of 1,000 objects or more runs
    ANALYZE (a small one does not)."""
    from reconciler.stores._sql import ANALYZE_AFTER

    sql = (
        "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'rc_objects' "
        "AND schemaname = current_schema()"
    )
    now = datetime(2026, 12, 2, tzinfo=UTC)
    with open_store(pg_url) as store:
        few = [ObjectWrite("Schedule", f"s{i}", "h", "{}") for i in range(10)]
        store.apply_changes(store.serial(), "a", few, [], now)
        assert raw_sql(pg_url, sql) == [(None,)]
        many = [ObjectWrite("Schedule", f"m{i}", "h", "{}") for i in range(ANALYZE_AFTER)]
        store.apply_changes(store.serial(), "b", many, [], now)
    assert raw_sql(pg_url, sql)[0][0] is not None


def test_deferred_flush_is_for_that_connection_only_and_survives_a_reconnect(
    state_url: str,
) -> None:
    """The firing loop's connection commits without waiting for the flush; every other one
    (the workers' claims, which then flush the firing loop's commits too) still flushes."""
    from reconciler.stores.postgres import PostgresStore
    from reconciler.stores.sqlite import SqliteStore

    with open_store(state_url) as firing, open_store(state_url) as worker:
        firing.defer_flush()
        if isinstance(firing, SqliteStore):
            assert isinstance(worker, SqliteStore)
            assert firing._conn is not None and worker._conn is not None
            assert firing._conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
            assert worker._conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        else:
            assert isinstance(firing, PostgresStore) and isinstance(worker, PostgresStore)
            show = "SHOW synchronous_commit"
            assert firing._connection().execute(show).fetchone() == ("off",)
            assert worker._connection().execute(show).fetchone() == ("on",)
            firing._drop_connection()  # the database restarted: a new session
            assert firing._connection().execute(show).fetchone() == ("off",)
        assert firing.serial() == worker.serial()  # both work as before


def test_a_deferred_sqlite_connection_checkpoints_in_a_thread_of_its_own(tmp_path: Path) -> None:
    """The firing loop's commits never run SQLite's automatic checkpoint (it made every
    hundredth fire take milliseconds); a thread of the store checkpoints instead, so the log
    stays short however long the loop fires."""
    from reconciler.stores.sqlite import CHECKPOINT_EVERY

    path = tmp_path / "state.db"
    wal = Path(f"{path}-wal")
    now = datetime(2026, 12, 2, tzinfo=UTC)
    with SqliteStore(path) as firing:
        firing.defer_flush()
        assert firing._conn is not None
        assert firing._conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        body = json.dumps({"pad": "x" * 3000})
        sizes = []
        for i in range(CHECKPOINT_EVERY * 20):  # ~4 pages of log per commit
            firing.apply_changes(
                firing.serial(),
                f"r{i}",
                [ObjectWrite("Schedule", f"s{i % 50}", "h", body)],
                [],
                now,
            )
            if i % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
                time.sleep(0.05)  # the checkpoint thread's turn
                sizes.append(wal.stat().st_size)
        # without the checkpoints the log grows by every commit's pages (over 30 MB here);
        # with them it is reused from the start once copied, and stays near one interval's
        assert max(sizes) < 8 * 1024 * 1024, sizes
        checkpointer = firing._checkpointer
        assert checkpointer is not None and checkpointer.thread is not None
    assert not checkpointer.thread.is_alive()  # closing the store stopped it


def test_sqlite_writers_of_one_process_queue_before_the_file_lock(tmp_path: Path) -> None:
    """A second writer of the same process waits on the process's own lock of the file, so
    it starts the moment the first commits, instead of at the next turn of SQLite's busy
    handler (which sleeps 1, 2, 5, 10 ms and more between tries)."""
    path = tmp_path / "state.db"
    now = datetime(2026, 12, 2, tzinfo=UTC)
    with SqliteStore(path) as first, SqliteStore(path) as second:
        began: list[float] = []
        assert second._conn is not None
        second._conn.set_trace_callback(
            lambda sql: (
                began.append(time.monotonic()) if sql.startswith("BEGIN IMMEDIATE") else None
            )
        )
        holding = threading.Event()
        released: list[float] = []

        def hold() -> None:
            with first._tx("write") as tx:
                tx.run("UPDATE rc_meta SET serial = serial WHERE id = 1")
                holding.set()
                time.sleep(0.1)
                released.append(time.monotonic())

        t = threading.Thread(target=hold)
        t.start()
        assert holding.wait(5)
        second.apply_changes(0, "r", [ObjectWrite("Schedule", "a", "h", "{}")], [], now)
        t.join(5)
        assert released and began
        assert began[0] >= released[0]  # it did not knock on SQLite's lock meanwhile
        assert second.serial() == 1


def test_a_checkpoint_thread_that_cannot_open_the_file_hands_checkpoints_back_to_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The firing loop's connection turned SQLite's automatic checkpoint off for its thread;
    if that thread cannot open the file, the connection takes them back (the log would grow
    without end otherwise), with one warning naming the file."""
    from reconciler.stores.sqlite import CHECKPOINT_EVERY

    path = tmp_path / "state.db"
    now = datetime(2026, 12, 2, tzinfo=UTC)
    with SqliteStore(path) as firing:
        firing.defer_flush()
        checkpointer = firing._checkpointer
        assert checkpointer is not None
        checkpointer.path = tmp_path / "gone" / "state.db"  # a file it cannot open
        for i in range(CHECKPOINT_EVERY):
            firing.apply_changes(firing.serial(), f"r{i}", [obj(f"s{i}")], [], now)
        assert checkpointer.thread is not None
        checkpointer.thread.join(5)
        assert checkpointer.failed is not None
        with caplog.at_level("WARNING", logger="reconciler.state"):
            firing.apply_changes(firing.serial(), "last", [obj("last")], [], now)
        assert firing._checkpointer is None
        assert firing._conn is not None
        assert firing._conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
        assert any(str(path) in r.getMessage() for r in caplog.records)
