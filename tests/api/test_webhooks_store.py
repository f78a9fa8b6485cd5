"""Deliveries in the state store (both backends): recorded once, claimed by exactly one."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from reconciler.stores import StateStore, open_store
from reconciler.stores.base import Delivery

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def delivery(n: int, status: str = "pending", at: datetime = NOW) -> Delivery:
    return Delivery(
        "github",
        f"d-{n}",
        "pull_request_review",
        at,
        status,
        {"pr": n},
        None,
        None,  # type: ignore[arg-type]
    )


def test_a_delivery_is_recorded_once_and_a_replay_writes_nothing(store: StateStore) -> None:
    assert store.record_delivery(delivery(1))
    assert not store.record_delivery(
        Delivery("github", "d-1", "push", NOW, "ignored", {"other": True}, "x", None)
    )
    got = store.get_delivery("github", "d-1")
    assert got is not None and got.status == "pending" and got.facts == {"pr": 1}
    # the same id from another forge is another delivery
    assert store.record_delivery(Delivery("gitea", "d-1", "push", NOW, "done", {}, None, None))
    assert sorted(d.forge for d in store.list_deliveries(limit=10)) == ["gitea", "github"]


def test_claimed_deliveries_are_finished_with_their_outcome(store: StateStore) -> None:
    for n in range(3):
        store.record_delivery(delivery(n, at=NOW + timedelta(seconds=n)))
    store.record_delivery(delivery(9, status="ignored"))
    claimed = store.claim_deliveries(NOW, limit=2)
    assert [d.delivery_id for d in claimed] == ["d-0", "d-1"]
    assert all(d.status == "processing" for d in claimed)
    assert [d.delivery_id for d in store.claim_deliveries(NOW)] == ["d-2"]
    assert store.claim_deliveries(NOW) == []
    assert store.finish_delivery("github", "d-0", "done", "approve by alice", NOW)
    assert not store.finish_delivery("github", "d-0", "failed", "twice", NOW)
    got = store.get_delivery("github", "d-0")
    assert got is not None and (got.status, got.detail) == ("done", "approve by alice")
    # a claim whose replica died is taken again once it is stale
    later = NOW + timedelta(seconds=301)
    assert sorted(d.delivery_id for d in store.claim_deliveries(later)) == ["d-1", "d-2"]


def test_concurrent_claims_give_each_delivery_to_exactly_one_replica(state_url: str) -> None:
    first = open_store(state_url, lock_timeout=10)
    try:
        for n in range(60):
            first.record_delivery(delivery(n, at=NOW + timedelta(milliseconds=n)))
    finally:
        first.close()
    got: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def replica(i: int) -> None:
        s = open_store(state_url, lock_timeout=10)
        try:
            start.wait(10)
            for _ in range(100):
                claimed = s.claim_deliveries(NOW, limit=3)
                if not claimed:
                    break
                got[i].extend(d.delivery_id for d in claimed)
        finally:
            s.close()

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [d for part in got for d in part]
    assert sorted(every) == sorted(f"d-{n}" for n in range(60))  # each once, none lost


def test_finished_deliveries_older_than_the_history_are_pruned(store: StateStore) -> None:
    store.record_delivery(delivery(1, status="done", at=NOW - timedelta(days=40)))
    store.record_delivery(delivery(2, status="pending", at=NOW - timedelta(days=40)))
    store.record_delivery(delivery(3, status="ignored", at=NOW))
    assert store.prune_deliveries(NOW - timedelta(days=30)) == 1
    assert sorted(d.delivery_id for d in store.list_deliveries()) == ["d-2", "d-3"]
