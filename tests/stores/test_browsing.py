"""The store's reads for the dashboard's pages, on SQLite and on PostgreSQL: bounded pages of
objects and runs, keyset paging that never repeats or skips a row, filters that combine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from reconciler.stores import NewRun, ObjectWrite, StateStore

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"


def _schedules(store: StateStore, names: list[str], state: str = "active") -> None:
    store.apply_changes(
        store.serial(),
        SHA,
        [
            ObjectWrite(
                "Schedule",
                n,
                f"h-{n}",
                json.dumps({"spec": {"template": "t"}}),
                state=("awaiting-approval" if n.startswith("apr") else state),  # type: ignore[arg-type]
                approval_hash=f"a-{n}" if n.startswith("apr") else None,
            )
            for n in names
        ],
        [],
        NOW,
    )


def test_objects_come_in_pages_by_name_and_the_next_page_starts_after_the_last(
    store: StateStore,
) -> None:
    names = [f"s{i:03d}" for i in range(25)] + ["apr-1", "apr-2", "a_b", "axb"]
    _schedules(store, names)
    seen: list[str] = []
    after = None
    for _ in range(10):
        page = store.page_objects("Schedule", after, 7)
        if not page:
            break
        seen += [o.name for o in page]
        after = page[-1].name
    assert seen == sorted(names)
    queue = store.page_objects("Schedule", None, 50, state="awaiting-approval")
    assert [o.name for o in queue] == ["apr-1", "apr-2"]
    decided = store.page_objects("Schedule", "apr-1", 50, needs_approval=True)
    assert [(o.name, o.approval_hash) for o in decided] == [("apr-2", "a-apr-2")]
    # an underscore in the search is a character, not a wildcard
    assert [o.name for o in store.page_objects("Schedule", contains="a_b")] == ["a_b"]
    assert [o.name for o in store.page_objects("Schedule", contains="s01")] == [
        f"s{i:03d}" for i in range(10, 20)
    ]
    assert store.count_states("Schedule") == {"active": 27, "awaiting-approval": 2}


def test_the_last_run_of_named_schedules_and_a_filtered_history_page_by_page(
    store: StateStore,
) -> None:
    _schedules(store, ["a", "b", "c"])
    made = []
    for i in range(30):
        sched = "ab"[i % 2]
        trigger = "schedule" if i % 3 else "cli"
        run = NewRun(
            "t",
            trigger,  # type: ignore[arg-type]
            SHA,
            schedule=sched,
            slot=NOW + timedelta(minutes=i) if trigger == "schedule" else None,
        )
        r = store.create_run(run, NOW + timedelta(seconds=i))
        assert r is not None
        made.append(r)
        if i % 4 == 0:
            store.finish_run(r.id, "failed", NOW + timedelta(seconds=i, milliseconds=5))
    last = store.last_runs_of(["a", "b", "c", "a"])
    assert set(last) == {"a", "b"}
    assert last["b"].id == made[-1].id and last["a"].id == made[-2].id

    want = [r.id for r in reversed(made) if r.schedule == "a" and r.trigger == "schedule"]
    got: list[int] = []
    before = None
    for _ in range(10):
        page = store.page_runs(schedule="a", trigger="schedule", before=before, limit=4)
        if not page:
            break
        got += [r.id for r in page]
        before = page[-1].id
    assert got == want
    failed = store.page_runs(status="failed", template="t", limit=100)
    assert [r.id for r in failed] == [r.id for r in reversed(made) if made.index(r) % 4 == 0]
    assert store.page_runs(template="other") == []
