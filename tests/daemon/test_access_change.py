"""The access-change rule (SPEC section 2): removing a person from Policy is never blocked by
the schedules they own. validate still reports the owner (CI catches it), but a commit whose
only errors are such owners of unchanged schedules is planned and applied, the plan says which
schedules will be disabled, and the firing loop disables each at its next slot with a failed
run that says why. A new or changed schedule with a bad owner is still refused."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.clock import ManualClock
from reconciler.engine.firing import FiringLoop
from reconciler.engine.reconciling import reconcile_once
from reconciler.stores import open_store
from tests.gitutil import git

from .conftest import schedule, write_repo

T0 = datetime(2026, 6, 15, 10, 0, 30, tzinfo=UTC)

POLICY = {
    "policy.yaml": """
        apiVersion: reconciler/v1
        kind: Policy
        metadata: {name: ops}
        spec:
          users:
            - {name: alice, email: alice@example.com, groups: [sre]}
            - {name: erin, email: erin@example.com, groups: [sre]}
            - {name: dave, email: dave@example.com, groups: []}
          permissions:
            - {group: sre, run: ["*"], approve: ["*"]}
        """
}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], capture_output=True, text=True, timeout=120
    )


def _commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def test_removing_an_owner_from_policy_applies_and_disables_their_schedule(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"o": schedule("o", '{cron: "0 * * * *"}')}, POLICY)
    git(repo, "init", "-q", "-b", "main")
    _commit(repo, "initial")
    state = str(tmp_path / "state.sqlite")
    assert _cli("apply", str(repo), "--yes", "--state", state).returncode == 0
    # alice leaves the sre group: her schedule is unchanged
    policy = repo / "policy.yaml"
    policy.write_text(
        policy.read_text().replace(
            "alice@example.com, groups: [sre]}", "alice@example.com, groups: []}"
        )
    )
    _commit(repo, "alice leaves sre")
    checked = _cli("validate", str(repo), "--rev", "HEAD", "--format", "json")
    assert checked.returncode == 1
    assert [d["code"] for d in json.loads(checked.stdout)["diagnostics"]] == ["owner-permission"]
    planned = _cli("plan", str(repo), "--state", state, "--format", "json")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    changes = {(c["kind"], c["name"]): c for c in json.loads(planned.stdout)["changes"]}
    assert ("Policy", "ops") in changes
    assert "will be disabled at its next slot" in changes[("Schedule", "o")]["reason"]
    text = _cli("plan", str(repo), "--state", state)
    assert text.returncode == 0 and "an access change always applies" in text.stderr
    applied = _cli("apply", str(repo), "--yes", "--state", state)
    assert applied.returncode == 0, applied.stderr
    with open_store(state) as store:
        assert store.info().revision == git(repo, "rev-parse", "HEAD")
        clock = ManualClock(T0)
        loop = FiringLoop(store, clock)
        loop.reload()
        for _ in range(3):
            deadline = loop.next_deadline()
            assert deadline is not None
            clock.set(deadline)
            loop.step()
        runs = store.list_runs(schedule="o")
        assert [r.status for r in runs] == ["failed"]
        assert "alice" in (runs[0].message or "")
        rec = store.get_object("Schedule", "o")
        assert rec is not None and rec.state == "disabled"
        assert [e.skip_reason for e in reversed(store.list_slots("o"))] == [
            None,
            "owner-invalid",
            "owner-invalid",
        ]
    # a new owner in Git enables it again
    (repo / "schedules" / "o.yaml").write_text(schedule("o", '{cron: "0 * * * *"}', owner="erin"))
    _commit(repo, "erin owns o")
    assert _cli("apply", str(repo), "--yes", "--state", state).returncode == 0
    with open_store(state) as store:
        rec = store.get_object("Schedule", "o")
        assert rec is not None and rec.state == "active"


def test_a_new_schedule_with_a_bad_owner_is_still_refused_and_the_daemon_stalls(
    tmp_path: Path,
) -> None:
    repo = write_repo(tmp_path / "repo", {"o": schedule("o", '{cron: "0 * * * *"}')}, POLICY)
    git(repo, "init", "-q", "-b", "main")
    _commit(repo, "initial")
    state = str(tmp_path / "state.sqlite")
    with open_store(state) as store:
        clock = ManualClock(T0)
        assert reconcile_once(store, str(repo), clock).outcome == "applied"
        (repo / "schedules" / "n.yaml").write_text(
            schedule("n", '{cron: "0 * * * *"}', owner="dave")
        )
        _commit(repo, "a schedule owned by someone without run")
        stalled = reconcile_once(store, str(repo), clock)
        assert stalled.outcome == "stalled"
        assert [d.code for d in stalled.diagnostics] == ["owner-permission"]
        assert store.get_object("Schedule", "n") is None
        # ... while removing alice's access (her schedule unchanged) goes through
        (repo / "schedules" / "n.yaml").unlink()
        policy = repo / "policy.yaml"
        policy.write_text(
            policy.read_text().replace(
                "alice@example.com, groups: [sre]}", "alice@example.com, groups: []}"
            )
        )
        _commit(repo, "alice leaves sre")
        clock.advance(timedelta(minutes=1))
        passed = reconcile_once(store, str(repo), clock)
        assert passed.outcome == "applied", passed.message
        assert "disabled" in passed.message
        attempt = store.last_attempt()
        assert attempt is not None and attempt.ok and attempt.diagnostics
