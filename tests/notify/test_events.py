"""Which events notify, and how often: drift only when it changes, stalled on the transition
only, missed once per outage, disabled when the firing loop disables a schedule."""

from __future__ import annotations

import datetime as dt
import textwrap
import threading
from pathlib import Path

from reconciler.clock import ManualClock
from reconciler.engine.firing import FiringLoop
from reconciler.engine.reconciling import reconcile_once
from reconciler.engine.running import _DRIFT_STATE, _host_record
from reconciler.engine.runs import _record
from reconciler.engine.working import Lease
from reconciler.executors.spec import HostOutcome, RunOutcome, TaskDiff
from reconciler.stores import StateStore
from reconciler.stores.base import NewRun
from tests.daemon.conftest import BASE
from tests.gitutil import git

from .conftest import NOW, Receiver, applied, notify_repo, schedule


def _events(store: StateStore, event: str) -> list[dict[str, object]]:
    return [dict(r.payload) for r in store.list_notifications(limit=1000) if r.event == event]


def _check_run(store: StateStore, diff: str | None, at: dt.datetime) -> None:
    """A configuration run of ``conf`` on web-1 that found ``diff`` (None: in sync)."""
    run = store.create_run(NewRun("conf", "cli", None, claim_by="w"), at)
    assert run is not None
    host = HostOutcome(
        "web-1",
        "ok",
        ok=1,
        drift=() if diff is None else (TaskDiff("template nginx.conf", diff=diff),),
    )
    outcome = RunOutcome(
        str(run.id),
        "succeeded",
        "ok",
        hosts={"web-1": host},
        drift={"web-1": "in-sync" if diff is None else "found"},
    )
    lease = Lease("w", 60, threading.Event(), threading.Event())
    assert _record(store, run, outcome, "ok", lease, ManualClock(at), _host_record, _DRIFT_STATE)


def test_two_identical_check_runs_send_one_drift_message_and_a_new_diff_another(
    store: StateStore, tmp_path: Path, receiver: Receiver, hook_env: None
) -> None:
    applied(store, notify_repo(tmp_path / "repo", receiver.url, {}))
    _check_run(store, "-listen 80\n+listen 8080\n", NOW)
    _check_run(store, "-listen 80\n+listen 8080\n", NOW + dt.timedelta(minutes=1))
    assert len(_events(store, "drift")) == 1
    _check_run(store, "-listen 80\n+listen 9090\n", NOW + dt.timedelta(minutes=2))
    assert len(_events(store, "drift")) == 2
    # in sync, then the same drift again: that is a change, it notifies
    _check_run(store, None, NOW + dt.timedelta(minutes=3))
    _check_run(store, "-listen 80\n+listen 9090\n", NOW + dt.timedelta(minutes=4))
    drift = _events(store, "drift")
    assert len(drift) == 3
    detail = drift[0]["detail"]
    assert isinstance(detail, dict) and detail["server"] == "web-1"
    assert detail["tasks"][0]["diff"] == "-listen 80\n+listen 9090\n"
    # the template notifies on drift only: these successful runs sent nothing else
    assert {r.event for r in store.list_notifications(limit=1000)} == {"drift"}


def test_a_commit_that_fails_validation_notifies_once_not_on_every_pass(
    store: StateStore, tmp_path: Path, receiver: Receiver, hook_env: None
) -> None:
    root = notify_repo(tmp_path / "repo", receiver.url, {"a": schedule("a", "{every: 1h}")})
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    clock = ManualClock(NOW)
    assert reconcile_once(store, str(root), clock).outcome == "applied"
    bad = schedule("a", "{every: 1h}").replace("template: ping", "template: nope")
    root.joinpath("schedules/a.yaml").write_text(bad)
    git(root, "commit", "-qam", "bad")
    for _ in range(3):
        assert reconcile_once(store, str(root), clock).outcome == "stalled"
    (stalled,) = _events(store, "stalled")
    detail = stalled["detail"]
    assert isinstance(detail, dict) and detail["revision"] == git(root, "rev-parse", "HEAD")
    assert detail["diagnostics"] and detail["diagnostics"][0]["severity"] == "error"
    # another bad commit is another stall; the same one found again by a second pass is not
    root.joinpath("schedules/a.yaml").write_text(bad.replace("nope", "nope2"))
    git(root, "commit", "-qam", "worse")
    reconcile_once(store, str(root), clock)
    reconcile_once(store, str(root), clock)
    assert len(_events(store, "stalled")) == 2
    assert _events(store, "failure") == []


def test_slots_missed_in_an_outage_send_one_message_per_outage_and_schedule(
    store: StateStore, tmp_path: Path, receiver: Receiver, hook_env: None
) -> None:
    root = notify_repo(
        tmp_path / "repo",
        receiver.url,
        {
            "often": schedule("often", "{every: 1m}", misfire="{policy: skip, window: 1d}"),
            "catch": schedule(
                "catch", "{every: 1m}", misfire="{policy: once, window: 1d}", overlap="allow"
            ),
        },
    )
    applied(store, root)
    clock = ManualClock(NOW)
    loop = FiringLoop(store, clock)
    loop.step()
    for _ in range(3):  # on time: nothing missed
        clock.advance(60)
        loop.step()
    assert _events(store, "missed") == []
    clock.advance(dt.timedelta(hours=2))  # the outage
    loop.step()
    for _ in range(3):
        clock.advance(60)
        loop.step()
    missed = sorted(_events(store, "missed"), key=lambda p: str(p["schedule"]))
    assert [m["schedule"] for m in missed] == ["catch", "often"]
    details = [m["detail"] for m in missed]
    assert all(isinstance(d, dict) and int(d["count"]) >= 100 for d in details)


def test_a_schedule_disabled_at_its_slot_because_its_owner_lost_run_notifies(
    store: StateStore, tmp_path: Path, receiver: Receiver, hook_env: None
) -> None:
    root = notify_repo(tmp_path / "repo", receiver.url, {"a": schedule("a", "{every: 1m}")})
    applied(store, root)
    clock = ManualClock(NOW)
    loop = FiringLoop(store, clock)
    loop.step()
    policy = BASE["policy.yaml"].replace('run: ["*"]', 'run: ["conf"]')
    (root / "policy.yaml").write_text(textwrap.dedent(policy).lstrip())
    from reconciler.engine.desired import load_repo
    from reconciler.engine.planning import apply_plan, desired_for, plan_against_state

    _, result = load_repo(str(root), None, "head", NOW)
    desired, disabled = desired_for(result, store)
    assert desired is not None and "a" in disabled
    apply_plan(store, plan_against_state(desired, store, NOW, dt.timedelta(days=7), disabled), NOW)
    loop.poke()
    clock.advance(61)
    loop.step()
    clock.advance(60)
    loop.step()
    (event,) = _events(store, "disabled")
    detail = event["detail"]
    assert isinstance(detail, dict) and "alice" in str(detail["reason"])
    assert event["schedule"] == "a" and event["template"] == "ping"
