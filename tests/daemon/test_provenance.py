"""Run provenance on both state backends: a fired run records the key that signed its
schedule's revision, the approval content hash with the users whose latest decision approves
it, and the replica whose worker claims it; a run created claimed records its own process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.clock import ManualClock
from reconciler.engine.desired import load_repo
from reconciler.engine.firing import FiringLoop
from reconciler.engine.planning import apply_plan, plan_against_state
from reconciler.engine.provenance import provenance_json
from reconciler.engine.running import run_json
from reconciler.stores import Approval, NewRun, ObjectWrite, StateStore
from tests.gitutil import git

from .conftest import schedule, write_repo

T0 = datetime(2026, 6, 15, 10, 0, 30, tzinfo=UTC)
KEY = "ssh-ed25519 SHA256:Q2hlY2tlZCBieSB0aGUgdGVzdHMgb2YgcHJvdmVuYW5jZQ"


def test_fired_and_claimed_runs_carry_their_provenance(
    tmp_path: Path, open_state: Callable[[], StateStore]
) -> None:
    store = open_state()
    root = write_repo(
        tmp_path / "repo",
        {"gated": schedule("gated", "{every: 1m}"), "plain": schedule("plain", "{every: 1m}")},
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    sha = git(root, "rev-parse", "HEAD")
    _, result = load_repo(str(root), None, "head", T0)
    assert result.desired is not None
    plan = plan_against_state(result.desired, store, T0, timedelta(days=7))
    apply_plan(store, plan, T0, str(root), KEY)
    assert store.info().signing_key == KEY and store.history()[0].signing_key == KEY
    assert store.signing_keys([sha, "0" * 40]) == {sha: KEY, "0" * 40: None}
    # the gated schedule's content was approved by alice; bob denied; carol changed her mind
    rec = store.get_object("Schedule", "gated")
    assert rec is not None
    store.apply_changes(
        store.serial(),
        sha,
        [
            ObjectWrite(
                rec.kind, rec.name, rec.content_hash, rec.body, True, "active", None, (), "h1"
            )
        ],
        [],
        T0,
        "approved",
        KEY,
    )
    for user, decision in (("alice", "approve"), ("bob", "deny"), ("carol", "approve")):
        store.record_approval(Approval("gated", "h1", user, decision, T0))  # type: ignore[arg-type]
    store.record_approval(Approval("gated", "h1", "carol", "deny", T0 + timedelta(seconds=1)))
    store.record_approval(Approval("gated", "h0", "dave", "approve", T0))  # another content

    clock = ManualClock(T0)
    loop = FiringLoop(store, clock)
    loop.reload()
    clock.set(T0 + timedelta(minutes=3))
    runs = loop.step()
    assert {r.schedule for r in runs} == {"gated", "plain"} and len(runs) == 2
    by_schedule = {r.schedule: store.get_run(r.id) for r in runs}
    gated, plain = by_schedule["gated"], by_schedule["plain"]
    assert gated is not None and plain is not None
    assert provenance_json(gated) == {
        "commit": sha,
        "signing_key": KEY,
        "content_hash": "h1",
        "approvers": ["alice"],
        "trigger": gated.trigger,
        "slot": gated.slot.isoformat() if gated.slot else None,
        "replica": None,
    }
    assert gated.trigger == "schedule" and gated.slot is not None
    assert provenance_json(plain)["content_hash"] is None
    assert provenance_json(plain)["approvers"] == []
    assert provenance_json(plain)["signing_key"] == KEY

    # a daemon worker's claim records its replica; a process running its own run, itself
    claimed = store.claim_next_run("replica-a/w0/0a1b2c3d", 60, clock.now())
    assert claimed is not None and claimed.provenance["replica"] == "replica-a"
    assert claimed.provenance["signing_key"] == KEY
    again = store.get_run(claimed.id)
    assert again is not None and run_json(again)["provenance"]["replica"] == "replica-a"
    queued = [r for r in runs if r.id != claimed.id]
    taken = store.claim_run(queued[0].id, "host-b:4242", 60, clock.now())
    assert taken is not None and taken.provenance["replica"] == "host-b:4242"
    own = store.create_run(
        NewRun(
            template="ping",
            trigger="cli",
            commit=sha,
            claim_by="host-c:7",
            provenance={"signing_key": KEY, "content_hash": None, "approvers": []},
        ),
        clock.now(),
    )
    assert own is not None
    shown = store.get_run(own.id)
    assert shown is not None and provenance_json(shown) == {
        "commit": sha,
        "signing_key": KEY,
        "content_hash": None,
        "approvers": [],
        "trigger": "cli",
        "slot": None,
        "replica": "host-c:7",
    }
