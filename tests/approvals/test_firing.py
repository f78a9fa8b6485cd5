"""A past-due ``at:`` that waited for approval: approving it needs force, and then the firing
loop runs it right away, exactly once (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.clock import ManualClock
from reconciler.engine.approving import ApprovalRefused, decide
from reconciler.engine.firing import FiringLoop
from reconciler.stores import StateStore

from .conftest import apply_head, make_repo

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SLOT = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
ONCE = {
    "schedules/once.yaml": """
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {name: once}
        spec:
          template: deploy
          owner: ops
          when: {at: "2026-03-02T13:00:00"}
        """
}


def test_a_past_due_at_that_waited_runs_once_right_away_after_a_forced_approval(
    store: StateStore, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", extra=ONCE)
    apply_head(store, root, T0)
    clock = ManualClock(T0)
    loop = FiringLoop(store, clock)
    loop.reload()
    clock.set(SLOT + timedelta(minutes=30))
    assert [r.schedule for r in loop.step() if r.schedule == "once"] == []
    waited = store.get_slot("once", SLOT)
    assert waited is not None and waited.skip_reason == "approval-pending"

    late = SLOT + timedelta(hours=1)
    with pytest.raises(ApprovalRefused, match="--force") as e:
        decide(store, "once", "bob", "approve", "cli", late)
    assert e.value.kind == "past-due"
    assert store.list_approvals("once") == []
    result = decide(store, "once", "bob", "approve", "cli", late, force=True)
    assert result.state == "active"
    assert store.get_slot("once", SLOT) is None  # the waiting entry gives way to the run

    clock.set(late)
    loop.poke()  # the daemon's loop notices through the state serial (at most 1 s later)
    runs = [r for r in loop.step() if r.schedule == "once"]
    assert [(r.schedule, r.slot, r.trigger) for r in runs] == [("once", SLOT, "schedule")]
    entry = store.get_slot("once", SLOT)
    assert entry is not None and entry.run_id == runs[0].id
    clock.set(late + timedelta(days=2))
    assert [r for r in loop.step() if r.schedule == "once"] == []
    fresh = FiringLoop(store, clock)  # a restart, or another replica
    fresh.reload()
    assert [r for r in fresh.step() if r.schedule == "once"] == []
    assert len(store.list_runs(schedule="once")) == 1


def test_a_past_due_at_no_daemon_saw_runs_right_away_after_a_forced_approval(
    store: StateStore, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", extra=ONCE)
    apply_head(store, root, T0)
    late = SLOT + timedelta(hours=5)
    decide(store, "once", "erin", "approve", "api", late, force=True)
    clock = ManualClock(late)
    loop = FiringLoop(store, clock)
    loop.reload()
    runs = loop.step()
    assert [(r.schedule, r.slot) for r in runs if r.schedule == "once"] == [("once", SLOT)]


def test_an_at_approved_before_its_time_fires_at_its_time_and_a_denied_one_never(
    store: StateStore, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", extra=ONCE)
    apply_head(store, root, T0)
    decide(store, "once", "bob", "approve", "cli", T0 + timedelta(minutes=5))
    decide(store, "nightly", "bob", "deny", "cli", T0 + timedelta(minutes=5))
    clock = ManualClock(T0 + timedelta(minutes=5))
    loop = FiringLoop(store, clock)
    loop.reload()
    clock.set(datetime(2026, 3, 3, 2, 30, tzinfo=UTC))
    runs = loop.step()
    assert [(r.schedule, r.slot) for r in runs if r.schedule == "once"] == [("once", SLOT)]
    denied = store.get_slot("nightly", datetime(2026, 3, 3, 2, 0, tzinfo=UTC))
    assert denied is not None and denied.skip_reason == "denied"


def test_a_review_without_force_and_a_later_apply_leave_a_past_due_at_waiting(
    store: StateStore, tmp_path: Path
) -> None:
    from reconciler.engine.approving import Review, record_review

    from .conftest import commit, write

    root = make_repo(tmp_path / "repo", author="frank", extra=ONCE)
    apply_head(store, root, T0)
    rec = store.get_object("Schedule", "once")
    assert rec is not None and rec.approval_hash is not None
    late = SLOT + timedelta(hours=2)
    [result] = record_review(
        store, {"once": rec.approval_hash}, Review("bob", "approve", "github"), late
    )
    assert result.recorded and result.state == "awaiting-approval"
    assert "--force" in result.message
    write(root, "notes.yaml", "just: notes\n")  # an unrelated commit is applied later
    commit(root, "frank", "notes")
    apply_head(store, root, late)
    again = store.get_object("Schedule", "once")
    assert again is not None and again.state == "awaiting-approval", again.state_reason
    assert "--force" in (again.state_reason or "")
    assert decide(store, "once", "erin", "approve", "cli", late, force=True).state == "active"
