"""The outbox in the state store, on SQLite and PostgreSQL: rows written with the event they
report, claimed by one sender at a time, retried, failed, counted; marks that dedupe."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest

from reconciler.stores import StateStore, _sql, open_store
from reconciler.stores.base import NewRun, NotifyMark, OutboxWrite, RunId
from tests.stores.conftest import raw_sql
from tests.stores.test_contract import open_backend

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def row(n: int, mark: str | None = None, run_id: int | None = None) -> OutboxWrite:
    return OutboxWrite(
        delivery_id=f"00000000-0000-4000-8000-{n:012d}",
        event="failure",
        channel="hook",
        payload={"event": "failure", "detail": {"n": n}},
        schedule="s",
        template="t",
        run_id=None if run_id is None else RunId(run_id),
        mark=mark,
    )


def test_a_run_outcome_and_its_notifications_are_one_transaction(store: StateStore) -> None:
    run = store.create_run(NewRun("t", "cli", None, claim_by="w1"), NOW)
    assert run is not None
    # a worker that lost its lease records nothing: no outcome, and no notification
    assert not store.record_outcome(run.id, "other", "failed", "x", [], [], NOW, [row(1)])
    assert store.list_notifications() == []
    assert store.record_outcome(run.id, "w1", "failed", "x", [], [], NOW, [row(2, run_id=run.id)])
    (rec,) = store.list_notifications()
    assert (rec.status, rec.attempts, rec.run_id, rec.payload["detail"]) == (
        "pending",
        0,
        run.id,
        {"n": 2},
    )
    assert store.notification_counts() == {"pending": 1, "sending": 0, "sent": 0, "failed": 0}


def test_a_row_whose_mark_did_not_change_is_not_written(store: StateStore) -> None:
    assert store.write_notifications([row(1, "m")], [NotifyMark("m", "fp1")], NOW) == 1
    assert store.write_notifications([row(2, "m")], [NotifyMark("m", "fp1")], NOW) == 0
    assert store.write_notifications([], [NotifyMark("m", "reset")], NOW) == 0
    assert store.write_notifications([row(3, "m")], [NotifyMark("m", "fp1")], NOW) == 1
    assert len(store.list_notifications()) == 2


def test_claims_retries_and_failure_follow_the_status_of_each_row(store: StateStore) -> None:
    store.write_notifications([row(1), row(2)], [], NOW)
    first = store.claim_notifications("a", 1, 30, NOW)
    assert [(r.delivery_id[-1], r.status, r.attempts) for r in first] == [("1", "sending", 1)]
    # the claimed row is not handed out again while its claim holds
    second = store.claim_notifications("b", 10, 30, NOW)
    assert [r.delivery_id[-1] for r in second] == ["2"]
    assert store.claim_notifications("c", 10, 30, NOW) == []
    assert store.mark_notification_sent(first[0].id, "a", NOW)
    assert not store.mark_notification_sent(second[0].id, "a", NOW)  # not a's claim
    later = NOW + dt.timedelta(seconds=5)
    assert store.retry_notification(second[0].id, "b", "HTTP 500", later, NOW)
    assert store.claim_notifications("c", 10, 30, NOW) == []  # not due yet
    (again,) = store.claim_notifications("c", 10, 30, later)
    assert (again.attempts, again.last_error) == (2, "HTTP 500")
    assert store.retry_notification(again.id, "c", "HTTP 500", None, later)
    assert store.notification_counts() == {"pending": 0, "sending": 0, "sent": 1, "failed": 1}
    (failed,) = store.list_notifications("failed")
    assert failed.delivery_id == second[0].delivery_id


def test_a_claim_that_expired_is_taken_again_with_the_same_delivery_id(
    store: StateStore, backend: str
) -> None:
    store.write_notifications([row(1)], [], NOW)
    (claimed,) = store.claim_notifications("dead", 5, 0.2, NOW)
    # PostgreSQL judges claims by the database's clock, SQLite by the caller's instant
    import time

    time.sleep(0.3)
    (again,) = store.claim_notifications("alive", 5, 30, NOW + dt.timedelta(seconds=1))
    assert (again.delivery_id, again.attempts, again.claimed_by) == (
        claimed.delivery_id,
        2,
        "alive",
    )
    assert not store.mark_notification_sent(again.id, "dead", NOW)


def test_concurrent_senders_never_claim_one_row_twice(state_url: str, store: StateStore) -> None:
    store.write_notifications([row(i) for i in range(40)], [], NOW)
    got: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def sender(name: str) -> None:
        try:
            with open_store(state_url, lock_timeout=10) as s:
                mine: list[str] = []
                for _ in range(20):
                    rows = s.claim_notifications(name, 3, 30, NOW)
                    if not rows:
                        break
                    mine += [r.delivery_id for r in rows]
                got[name] = mine
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=sender, args=(f"s{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    claimed = [d for ids in got.values() for d in ids]
    assert len(claimed) == 40 and len(set(claimed)) == 40


def test_a_state_that_lacks_a_migration_numbered_below_its_version_gets_it_later(
    state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Areas of the schema take their own numbers, so a state may have run 6 before 5 (a
    version without 5 opened it): the next open runs 5, once, and keeps what 6 wrote."""
    open_backend(state_url, migrate_to=4).close()
    full = _sql.MIGRATIONS
    monkeypatch.setattr(_sql, "MIGRATIONS", tuple(m for m in full if m.version != 5))
    later = [m.version for m in full if m.version > 5]
    with open_store(state_url) as s:
        assert s.info().schema_version == _sql.LATEST_VERSION
        s.write_notifications([row(1)], [], NOW)
    versions = raw_sql(state_url, "SELECT version FROM rc_migrations")
    assert sorted(int(str(v[0])) for v in versions) == [1, 2, 3, 4, *later]
    monkeypatch.setattr(_sql, "MIGRATIONS", full)
    with open_store(state_url) as s:
        assert s.info().schema_version == _sql.LATEST_VERSION
    with open_store(state_url) as s:  # nothing runs twice
        assert len(s.list_notifications()) == 1
    versions = raw_sql(state_url, "SELECT version FROM rc_migrations")
    assert sorted(int(str(v[0])) for v in versions) == [1, 2, 3, 4, 5, *later]
    assert raw_sql(state_url, "SELECT count(*) FROM rc_firing") == [(0,)]


def test_pruning_drops_old_sent_notifications(store: StateStore, tmp_path: Path) -> None:
    store.write_notifications([row(1), row(2)], [], NOW)
    (r1,) = store.claim_notifications("a", 1, 30, NOW)
    store.mark_notification_sent(r1.id, "a", NOW)
    store.prune_history(10, 1, NOW + dt.timedelta(days=3))
    assert [r.status for r in store.list_notifications()] == ["pending"]


def test_schedule_notify_takes_the_rules_out_of_the_named_schedules_in_chunks(
    store: StateStore,
) -> None:
    from reconciler.stores.base import ObjectWrite

    names = [f"s{i:04d}" for i in range(1200)]  # more than one chunk of names

    def body(n: str) -> str:
        notify = [{"channel": "ops", "on": ["missed"]}] if n.endswith("0") else None
        spec = {"template": f"t-{n}", **({"notify": notify} if notify else {})}
        return json.dumps({"kind": "Schedule", "spec": spec})

    store.apply_changes(0, "r", [ObjectWrite("Schedule", n, "h", body(n)) for n in names], [], NOW)
    got = store.schedule_notify([*names[::2], "missing", names[0]])
    assert sorted(got) == names[::2]
    assert got["s0010"] == ([{"channel": "ops", "on": ["missed"]}], "t-s0010")
    assert got["s0002"] == (None, "t-s0002")
    store.apply_changes(store.serial(), "r", [ObjectWrite("JobTemplate", "x", "h", "{}")], [], NOW)
    assert store.schedule_notify(["x"]) == {}  # a template is not a schedule


def test_a_damaged_schedule_body_has_no_rules_and_the_others_keep_theirs(
    state_url: str, store: StateStore
) -> None:
    """A body that is not JSON (edited by hand) costs that schedule its own rules, on both
    backends (PostgreSQL fails the query that casts it: the rules are then read one by one)."""
    from reconciler.engine.notifying import _schedule_rules
    from reconciler.stores.base import ObjectWrite

    rules = [{"channel": "ops", "on": ["missed"]}]
    body = json.dumps({"kind": "Schedule", "spec": {"template": "t", "notify": rules}})
    writes = [ObjectWrite("Schedule", n, "h", body) for n in ("a", "b")]
    store.apply_changes(0, "r", writes, [], NOW)
    raw_sql(state_url, "UPDATE rc_objects SET body = 'not json' WHERE name = 'b'")
    got = _schedule_rules(store, ["a", "b"])
    assert got["a"] == ([("ops", frozenset({"missed"}))], "t")
    assert got.get("b", ([], None))[0] == []
