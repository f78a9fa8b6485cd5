"""``reconciler serve`` as a real process on a real Git repository: it applies commits within
about a second, fires every slot once, drains on SIGTERM and exits 0, and after a SIGKILL and a
restart no slot is recorded twice and none is missing. The fake executor (the test entry point
``RECONCILER_TEST_FAKE_EXECUTOR``) stands in for Ansible where a test needs many runs."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
import urllib.error
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from reconciler.stores import StateStore, open_store
from tests.gitutil import git

from .conftest import Serve, ledger_slots, make_repo, schedule, until, write_repo


def test_serve_applies_a_new_commit_within_a_second_fires_it_and_drains_on_sigterm(
    tmp_path: Path, serves: list[Serve]
) -> None:
    repo = make_repo(tmp_path, {"idle": schedule("idle", '{cron: "0 3 * * *"}')})
    state = str(tmp_path / "state.sqlite")
    s = Serve(repo, state, "--workers", "2", "--poll", "1h")
    serves.append(s)
    until(lambda: s.get("/api/status")["applied"]["revision"] is not None, 20, "the first apply")  # type: ignore[index]
    assert s.get("/healthz", key=None) == {"status": "ok"}
    for bad in (None, "rk_wrong"):
        try:
            s.get("/api/status", key=bad)
            raise AssertionError("/api/status answered without a valid key")
        except urllib.error.HTTPError as e:
            assert e.code == 401
            assert json.load(e)["error"]["code"] == "unauthorized"
    # a commit adds an every-second schedule: the watcher sees the ref move
    (repo / "schedules" / "tick.yaml").write_text(schedule("tick", "{every: 1s}"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tick every second")
    head = git(repo, "rev-parse", "HEAD")
    t0 = time.monotonic()
    until(lambda: s.get("/api/status")["applied"]["revision"] == head, 10, "the new commit")  # type: ignore[index]
    applied_after = time.monotonic() - t0
    assert applied_after < 3, f"applied {applied_after:.2f} s after the commit"
    with open_store(state) as store:
        until(
            lambda: len(store.list_runs(schedule="tick", status="succeeded")) >= 3,
            20,
            "three runs of tick",
        )
    s.signal(signal.SIGTERM)
    assert s.wait(60) == 0, s.log.read_text()
    text = s.log.read_text()
    assert "Traceback" not in text
    assert "draining" in text and "stopped" in text
    with open_store(state) as store:
        slots = ledger_slots(store, "tick")
        assert len(slots) == len(set(slots))
        assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(slots))
        runs = store.list_runs(schedule="tick", limit=1000)
        assert {r.status for r in runs} <= {"succeeded", "cancelled", "queued"}
        assert not [r for r in runs if r.status == "running"]
        assert store.list_replicas(datetime.fromtimestamp(0).astimezone()) == []


def test_a_bad_commit_stalls_and_keeps_the_last_good_state_in_force(
    tmp_path: Path, serves: list[Serve]
) -> None:
    repo = make_repo(tmp_path, {"idle": schedule("idle", '{cron: "0 3 * * *"}')})
    state = str(tmp_path / "state.sqlite")
    s = Serve(repo, state, "--workers", "0", "--poll", "1h")
    serves.append(s)
    until(lambda: s.get("/api/status")["applied"]["revision"] is not None, 20, "the first apply")  # type: ignore[index]
    good = git(repo, "rev-parse", "HEAD")
    (repo / "schedules" / "idle.yaml").write_text(schedule("idle", '{cron: "0 3 * *"}'))
    git(repo, "commit", "-qam", "a broken cron")
    bad = git(repo, "rev-parse", "HEAD")
    until(
        lambda: (s.get("/api/status")["attempted"] or {}).get("revision") == bad,
        10,  # type: ignore[union-attr]
        "the bad commit's attempt",
    )
    st = s.get("/api/status")
    assert st["applied"]["revision"] == good  # type: ignore[index]
    att = st["attempted"]
    assert att["ok"] is False and att["diagnostics"]  # type: ignore[index]
    d = att["diagnostics"][0]  # type: ignore[index]
    assert d["path"] == "schedules/idle.yaml" and d["line"] >= 1
    out = subprocess.run(
        [sys.executable, "-m", "reconciler", "status", "--state", state],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "FAILED" in out and "schedules/idle.yaml:" in out
    s.signal(signal.SIGINT)
    assert s.wait(60) == 0
    assert "Traceback" not in s.log.read_text()


def test_sigkill_then_restart_records_no_slot_twice_and_none_missing(
    tmp_path: Path, serves: list[Serve], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over 1,000 slots: serve is SIGKILLed while firing with runs in flight, stays down past
    the (test-shortened) lateness limit, and restarts. Every slot has exactly one ledger entry,
    the misfire policies decide the outage, the killed replica's runs are abandoned."""
    policies = {"all": "{policy: all}", "skip": "{policy: skip}", "once": "{policy: once}"}
    docs = {}
    for i in range(20):
        kind = "all" if i < 10 else "skip" if i < 15 else "once"
        docs[f"{kind}{i}"] = schedule(
            f"{kind}{i}", "{every: 1s}", overlap="allow", misfire=policies[kind]
        )
    names = sorted(docs)
    repo = make_repo(tmp_path, docs)
    state = str(tmp_path / "state.sqlite")
    monkeypatch.setenv("RECONCILER_TEST_LATE_SECONDS", "1")

    def total(store: StateStore) -> int:
        return sum(len(ledger_slots(store, n)) for n in names)

    first = Serve(repo, state, "--workers", "2", "--poll", "1h", fake="0.5")
    serves.append(first)
    with open_store(state) as store:
        until(lambda: total(store) >= 500, 60, "500 slots")
    first.signal(signal.SIGKILL)
    first.wait(10)
    killed_at = time.time()
    time.sleep(4)  # down for four seconds: more than the one-second lateness limit
    second = Serve(repo, state, "--workers", "2", "--poll", "1h", fake="0.05")
    serves.append(second)
    with open_store(state) as store:
        until(lambda: total(store) >= 1_100, 90, "1,100 slots")
    second.signal(signal.SIGTERM)
    assert second.wait(60) == 0
    with open_store(state) as store:
        assert total(store) >= 1_000
        outage: dict[str, list[str | None]] = {}
        for n in names:
            slots = ledger_slots(store, n)
            assert len(slots) == len(set(slots)), f"{n} has a slot twice"
            gaps = {b - a for a, b in itertools.pairwise(slots)}
            assert gaps == {timedelta(seconds=1)}, f"{n} misses a slot: {gaps}"
            outage[n] = [  # entries that cover a slot of the outage (ranges included)
                e.skip_reason
                for e in store.list_slots(n, limit=100_000)
                if e.slot.timestamp() < killed_at + 3
                and (e.until or e.slot).timestamp() > killed_at + 1
            ]
        # the outage's slots, per policy: all runs each, skip skips them, once one catch-up
        assert all(outage[n] and set(outage[n]) == {None} for n in names if n.startswith("all"))
        assert all("misfire" in outage[n] for n in names if n.startswith("skip"))
        runs = store.list_runs(limit=100_000)
        per_slot = [(r.schedule, r.slot) for r in runs if r.slot]
        assert len(per_slot) == len(set(per_slot))
        assert "catch-up" in {r.trigger for r in runs}
        # the runs the killed replica was executing were abandoned by the new replica at
        # once (their run locks were free), not after the lease, and never run again
        assert not [r for r in runs if r.status == "running"]
        abandoned = [r for r in runs if r.status == "abandoned"]
        assert abandoned and all("ended before the run did" in (r.message or "") for r in abandoned)
    assert "Traceback" not in first.log.read_text() + second.log.read_text()


def _cli(state: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args, "--state", state],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_run_queues_for_a_live_daemon_run_at_waits_and_cancel_stops_a_running_run(
    tmp_path: Path, serves: list[Serve]
) -> None:
    repo = make_repo(
        tmp_path,
        {
            "idle": schedule("idle", '{cron: "0 3 * * *"}'),
            "once": schedule("once", '{at: "2026-01-01T00:00:00"}'),
        },
    )
    state = str(tmp_path / "state.sqlite")
    s = Serve(repo, state, "--workers", "2", "--poll", "1h", fake="5")
    serves.append(s)
    until(lambda: s.get("/api/status")["applied"]["revision"] is not None, 20, "the first apply")  # type: ignore[index]
    until(lambda: s.get("/api/status")["replicas"], 20, "the replica row")
    done = _cli(state, "run", "ping", "--var", "greeting=hi", "--wait", "--format", "json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded" and run["trigger"] == "cli"
    with open_store(state) as store:
        rec = store.get_run(run["id"])
        assert rec is not None and rec.worker and "/w" in rec.worker  # a daemon worker ran it
        assert rec.untrusted == ("greeting",)
    # --at: queued now, not claimed before its time
    at = datetime.now().astimezone() + timedelta(seconds=3)
    queued = _cli(state, "run", "ping", "--at", at.isoformat(), "--format", "json")
    assert queued.returncode == 0, queued.stderr
    later = json.loads(queued.stdout)["run"]["id"]
    with open_store(state) as store:
        until(lambda: store.get_run(later).status == "succeeded", 30, "the --at run")  # type: ignore[union-attr]
        rec = store.get_run(later)
        assert rec is not None and rec.started_at is not None and rec.started_at >= at
    # cancel a running run: its worker stops it within a few seconds
    bg = _cli(state, "run", "ping", "--format", "json")
    rid = json.loads(bg.stdout)["run"]["id"]
    with open_store(state) as store:
        until(lambda: store.get_run(rid).status == "running", 20, "the run to start")  # type: ignore[union-attr]
    stopped = _cli(state, "cancel", str(rid))
    assert stopped.returncode == 0, stopped.stderr
    with open_store(state) as store:
        until(lambda: store.get_run(rid).status == "cancelled", 10, "the cancel")  # type: ignore[union-attr]
        assert "reconciler cancel" in (store.get_run(rid).message or "")  # type: ignore[union-attr]
    again = _cli(state, "cancel", str(rid))
    assert again.returncode == 1 and "already ended" in again.stderr
    bad = _cli(state, "run", "ping", "--at", "2026-12-01T02:00:00")
    assert bad.returncode == 1 and "offset" in bad.stderr and "Traceback" not in bad.stderr
    # retry: a new run (trigger retry) for the same job, run by the daemon; the original and
    # its ledger entry stay as they are
    with open_store(state) as store:
        until(lambda: ledger_slots(store, "once"), 20, "the past at: slot")
        first = store.list_runs(schedule="once")[0]
        until(lambda: store.get_run(first.id).status == "succeeded", 30, "the once run")  # type: ignore[union-attr]
    for original in (first.id, rid):
        redo = _cli(state, "retry", str(original), "--wait", "--format", "json")
        assert redo.returncode == 0, redo.stderr
        got = json.loads(redo.stdout)
        assert (got["trigger"], got["retry_of"], got["status"]) == ("retry", original, "succeeded")
    with open_store(state) as store:
        retried = store.get_run(got["id"] - 1)
        assert retried is not None and retried.schedule == "once" and retried.slot == first.slot
        assert retried.worker and "/w" in retried.worker  # a daemon worker ran it
        assert [e.run_id for e in store.list_slots("once")] == [first.id]
    s.signal(signal.SIGTERM)
    assert s.wait(60) == 0


SLOW = {
    "slow.yaml": """
        apiVersion: reconciler/v1
        kind: JobTemplate
        metadata: {name: slow}
        spec:
          type: orchestration
          playbook: playbooks/slow.yml
        """,
    "playbooks/slow.yml": """
        - hosts: all
          gather_facts: false
          tasks:
            - command: sleep 37
        """,
}


def _sleepers() -> list[int]:
    """Processes running the slow playbook's ``sleep 37`` (below any parent)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes() == b"sleep\x0037\x00":
                    out.append(int(proc.name))
            except OSError:
                continue
    return out


def test_sigkill_with_a_real_ansible_run_in_flight_then_restart(
    tmp_path: Path, serves: list[Serve]
) -> None:
    """End to end on real ansible-playbook: the run in flight when serve is SIGKILLed ends
    ``abandoned`` once a new serve starts, leaves no process behind, and its slot is never run
    again; the next slots run for real."""
    text = schedule("slow", '{every: 3s, start: "2026-01-01T00:00:00Z"}', overlap="skip")
    docs = {"slow": text.replace("template: ping", "template: slow")}
    root = write_repo(tmp_path / "repo", docs, SLOW)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "slow")
    state = str(tmp_path / "state.sqlite")
    first = Serve(root, state, "--workers", "1", "--poll", "1h", fake=None)
    serves.append(first)
    until(lambda: bool(_sleepers()), 60, "the playbook's sleep to start")
    with open_store(state) as store:
        [held] = store.list_runs(status="running")
    first.signal(signal.SIGKILL)
    first.wait(10)
    until(lambda: not _sleepers(), 30, "the orphaned playbook to be stopped")
    second = Serve(root, state, "--workers", "1", "--poll", "1h", fake=None)
    serves.append(second)
    with open_store(state) as store:
        until(lambda: store.get_run(held.id).status == "abandoned", 30, "the abandoned run")  # type: ignore[union-attr]
        until(
            lambda: any(r.status == "running" for r in store.list_runs(schedule="slow")),
            60,
            "a new run",
        )
        second.signal(signal.SIGTERM)
        assert second.wait(120) == 0
        runs = store.list_runs(schedule="slow", limit=1000)
        slots = [r.slot for r in runs]
        assert len(slots) == len(set(slots))
        assert {r.status for r in runs} <= {"abandoned", "cancelled", "succeeded"}
        assert [r.id for r in runs if r.status == "abandoned"] == [held.id]
    until(lambda: not _sleepers(), 30, "no playbook left after the drain")
