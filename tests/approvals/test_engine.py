"""The approval engine on both backends: one decision path, eligibility under the Policy in
force, authors of a change, the content an approval is for, counting in the planner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.engine.approving import (
    ApprovalRefused,
    Review,
    approval_hashes,
    approval_queue,
    decide,
    record_review,
    user_by_login,
    users_by_email,
)
from reconciler.engine.planning import plan_against_state, settle_authors
from reconciler.stores import Approval, StateStore

from .conftest import apply_head, commit, desired_at, make_repo, write

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def state_of(store: StateStore, name: str = "nightly") -> str | None:
    rec = store.get_object("Schedule", name)
    assert rec is not None
    return rec.state


def test_an_applied_schedule_records_its_content_hash_and_the_author_of_its_change(
    store: StateStore, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", author="alice")
    apply_head(store, root, NOW)
    rec = store.get_object("Schedule", "nightly")
    assert rec is not None
    assert rec.state == "awaiting-approval"
    assert rec.authors == ("alice@example.com",)
    assert rec.approval_hash == approval_hashes(desired_at(root, None, NOW))["nightly"]
    plain = store.get_object("Schedule", "plain")
    assert plain is not None and plain.approval_hash is None and plain.state == "active"
    assert "plain" not in approval_hashes(desired_at(root, None, NOW))


def test_the_author_is_refused_and_an_eligible_approver_activates_the_schedule(
    store: StateStore, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", author="alice")  # alice is a lead, but the author
    apply_head(store, root, NOW)
    with pytest.raises(ApprovalRefused, match="authored this change") as e:
        decide(store, "nightly", "alice", "approve", "cli", NOW)
    assert e.value.kind == "not-eligible"
    assert state_of(store) == "awaiting-approval"
    result = decide(store, "nightly", "bob", "approve", "cli", NOW)
    assert result.recorded and result.state == "active"
    assert state_of(store) == "active"
    [a] = store.list_approvals("nightly")
    assert (a.user, a.decision, a.via) == ("bob", "approve", "cli")


def test_a_listed_approver_without_approve_in_policy_and_a_stranger_are_refused(
    store: StateStore, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo")
    apply_head(store, root, NOW)
    with pytest.raises(ApprovalRefused, match='"carol" does not hold approve'):
        decide(store, "nightly", "carol", "approve", "cli", NOW)
    with pytest.raises(ApprovalRefused, match='"frank" is not an approver'):
        decide(store, "nightly", "frank", "approve", "cli", NOW)
    with pytest.raises(ApprovalRefused, match='"mallory" is not a user'):
        decide(store, "nightly", "mallory", "approve", "cli", NOW)
    with pytest.raises(ApprovalRefused, match="needs no approval") as e:
        decide(store, "plain", "bob", "approve", "cli", NOW)
    assert e.value.kind == "no-approval"
    with pytest.raises(ApprovalRefused, match='no schedule "nightlx"') as e:
        decide(store, "nightlx", "bob", "approve", "cli", NOW)
    assert e.value.kind == "unknown-schedule"
    assert store.list_approvals() == []
    assert state_of(store) == "awaiting-approval"


def test_a_pull_request_that_grants_its_reviewer_approve_does_not_make_them_eligible(
    store: StateStore, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo")
    apply_head(store, root, NOW)
    from tests.gitutil import git

    git(root, "checkout", "-q", "-b", "pr")
    policy = (root / "policy.yaml").read_text()
    write(
        root,
        "policy.yaml",
        policy.replace("{user: ops, run", "{user: carol, approve: ['*']}\n    - {user: ops, run"),
    )
    write(
        root,
        "schedules/nightly.yaml",
        (root / "schedules/nightly.yaml").read_text().replace("02:00", "02:30"),
    )
    head = commit(root, "frank", "move nightly, let carol approve")
    hashes = approval_hashes(desired_at(root, head, NOW))
    review = Review("carol", "approve", "github", head, None, frozenset({"frank"}))
    [result] = record_review(store, hashes, review, NOW)
    assert not result.recorded
    assert "does not hold approve" in result.message
    # the PR author never counts either, even a lead
    [by_author] = record_review(
        store, hashes, Review("frank", "approve", "github", head, None, frozenset({"frank"})), NOW
    )
    assert not by_author.recorded and "authored this change" in by_author.message
    [ok] = record_review(store, hashes, Review("bob", "approve", "github", head), NOW)
    assert ok.recorded and ok.state is None  # for content not applied yet
    [a] = store.list_approvals("nightly")
    assert (a.via, a.revision, a.content_hash) == ("github", head, hashes["nightly"])
    assert state_of(store) == "awaiting-approval"  # the applied content is another one
    # merged: the content bob approved in review becomes active on apply
    git(root, "checkout", "-q", "main")
    git(root, "merge", "-q", "--no-ff", "pr", "-m", "merge pr")
    apply_head(store, root, NOW)
    rec = store.get_object("Schedule", "nightly")
    assert rec is not None and rec.state == "active", rec.state_reason
    assert rec.authors == ("frank@example.com",)  # the PR's commit, not the merge commit


def test_an_approval_by_an_author_of_new_content_does_not_count_when_it_is_applied(
    store: StateStore, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo")
    apply_head(store, root, NOW)
    write(
        root,
        "schedules/nightly.yaml",
        (root / "schedules/nightly.yaml").read_text().replace("02:00", "04:00"),
    )
    head = commit(root, "erin", "later")
    chash = approval_hashes(desired_at(root, head, NOW))["nightly"]
    # recorded behind the engine's back, as if erin's own review had been taken
    store.record_approval(Approval("nightly", chash, "erin", "approve", NOW, via="github"))
    # the plan already says what apply will do (plan and apply agree)
    desired = desired_at(root, head, NOW)
    planned = plan_against_state(desired, store, NOW, timedelta(days=7))
    (change,) = [c for c in planned.changes if c.name == "nightly"]
    assert change.state == "active"  # counted without knowing the authors
    (settled,) = [
        c for c in settle_authors(store, planned, str(root)).changes if c.name == "nightly"
    ]
    assert settled.state == "awaiting-approval" and settled.impact is not None
    assert settled.impact.state == "awaiting-approval"
    apply_head(store, root, NOW)
    rec = store.get_object("Schedule", "nightly")
    assert rec is not None
    assert rec.authors == ("erin@example.com",)
    assert rec.state == "awaiting-approval", rec.state_reason


def test_count_two_needs_two_distinct_eligible_people(store: StateStore, tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", author="frank")
    write(
        root,
        "templates/deploy.yaml",
        (root / "templates/deploy.yaml").read_text().replace("count: 1", "count: 2"),
    )
    commit(root, "frank")
    apply_head(store, root, NOW)
    first = decide(store, "nightly", "bob", "approve", "cli", NOW)
    assert first.state == "awaiting-approval" and "1 so far" in first.message
    again = decide(store, "nightly", "bob", "approve", "api", NOW + timedelta(seconds=1))
    assert again.state == "awaiting-approval"  # the same person twice is one approval
    second = decide(store, "nightly", "erin", "approve", "cli", NOW)
    assert second.state == "active" and "bob, erin" in second.message
    [entry] = [e for e in approval_queue(store) if e.schedule == "nightly"]
    assert entry.approved_by == ("bob", "erin") and entry.required == 2
    assert entry.author == "frank"
    # a withdrawal (a dismissed review) takes it back below the count
    withdrawn = decide(store, "nightly", "erin", "withdraw", "github", NOW)
    assert withdrawn.state == "awaiting-approval"
    assert {a.user for a in store.list_approvals("nightly")} == {"bob"}


def test_a_playbook_only_edit_needs_approval_again(store: StateStore, tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    apply_head(store, root, NOW)
    decide(store, "nightly", "bob", "approve", "cli", NOW)
    before = store.get_object("Schedule", "nightly")
    assert before is not None and before.state == "active"
    write(root, "playbooks/deploy.yml", "- hosts: all\n  tasks:\n    - command: rm -rf /tmp/x\n")
    commit(root, "frank", "playbook only")
    plan = apply_head(store, root, NOW)
    [change] = [c for c in plan.changes if c.name == "nightly"]
    assert "content to approve changed" in change.reason or "awaiting-approval" in change.reason
    after = store.get_object("Schedule", "nightly")
    assert after is not None
    assert after.approval_hash != before.approval_hash
    assert after.state == "awaiting-approval"
    assert after.authors == ("frank@example.com",)  # who edited the playbook
    # frank may not approve his own playbook change, even once made a lead
    with pytest.raises(ApprovalRefused):
        decide(store, "nightly", "frank", "approve", "cli", NOW)
    assert decide(store, "nightly", "erin", "approve", "cli", NOW).state == "active"


def test_an_inventory_change_of_the_resolved_servers_needs_approval_again_a_host_change_not(
    store: StateStore, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo")
    apply_head(store, root, NOW)
    decide(store, "nightly", "bob", "approve", "cli", NOW)
    inv = (root / "inventory.yaml").read_text()
    write(
        root,
        "inventory.yaml",
        inv.replace("{name: web-2, host: 127.0.0.1", "{name: web-2, host: 127.0.0.2"),
    )
    commit(root, "frank", "move web-2")
    apply_head(store, root, NOW)
    assert state_of(store) == "active"
    inv = (root / "inventory.yaml").read_text()
    write(root, "inventory.yaml", inv.replace("roles: [db]}", "roles: [db, web]}"))
    commit(root, "frank", "db-1 serves web too")
    apply_head(store, root, NOW)
    assert state_of(store) == "awaiting-approval"


def test_deny_blocks_until_the_content_changes(store: StateStore, tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    apply_head(store, root, NOW)
    denied = decide(store, "nightly", "erin", "deny", "cli", NOW, reason="not this week")
    assert denied.state == "denied"
    [a] = store.list_approvals("nightly")
    assert (a.decision, a.reason) == ("deny", "not this week")
    with pytest.raises(ApprovalRefused, match="denied for this content") as e:
        decide(store, "nightly", "bob", "approve", "cli", NOW)
    assert e.value.kind == "denied"
    # the denier changes their mind: the latest decision wins
    assert decide(store, "nightly", "erin", "approve", "cli", NOW).state == "active"
    decide(store, "nightly", "erin", "deny", "cli", NOW)
    assert state_of(store) == "denied"
    # an edit: new content, a new approval
    write(
        root,
        "schedules/nightly.yaml",
        (root / "schedules/nightly.yaml").read_text().replace("02:00", "05:00"),
    )
    commit(root, "frank", "later")
    apply_head(store, root, NOW)
    assert state_of(store) == "awaiting-approval"
    assert decide(store, "nightly", "bob", "approve", "cli", NOW).state == "active"


def test_users_are_found_by_email_and_forge_login_in_the_policy_in_force(
    store: StateStore, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo")
    apply_head(store, root, NOW)
    assert users_by_email(store, ["bob@example.COM", "nobody@example.com"]) == {"bob"}
    assert user_by_login(store, "Bobby") == "bob"
    assert user_by_login(store, "stranger") is None


def test_two_approvers_at_once_on_two_connections_reach_the_count(
    state_url: str, tmp_path: Path
) -> None:
    import threading

    from reconciler.stores import open_store

    root = make_repo(tmp_path / "repo", author="frank")
    write(
        root,
        "templates/deploy.yaml",
        (root / "templates/deploy.yaml").read_text().replace("count: 1", "count: 2"),
    )
    commit(root, "frank")
    stores = [open_store(state_url, lock_timeout=10) for _ in range(2)]
    try:
        apply_head(stores[0], root, NOW)
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def approve(store: StateStore, user: str) -> None:
            try:
                barrier.wait(5)
                decide(store, "nightly", user, "approve", "api", NOW)
            except BaseException as e:
                errors.append(e)

        threads = [
            threading.Thread(target=approve, args=(s, u))
            for s, u in zip(stores, ["bob", "erin"], strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert state_of(stores[0]) == "active"
    finally:
        for s in stores:
            s.close()


def test_a_decision_on_a_paused_schedule_is_kept_and_leaves_it_paused(
    store: StateStore, tmp_path: Path
) -> None:
    paused = """
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {name: held}
        spec:
          template: deploy
          owner: ops
          enabled: false
          when: {daily: {at: "06:00"}}
        """
    root = make_repo(tmp_path / "repo", extra={"schedules/held.yaml": paused})
    apply_head(store, root, NOW)
    assert state_of(store, "held") == "paused"
    result = decide(store, "held", "bob", "approve", "cli", NOW)
    assert result.recorded and result.state == "paused"
    assert state_of(store, "held") == "paused"
    # enabled again in Git: the approval of that content... is for other content (enabled
    # is part of the schedule), so it waits
    text = (root / "schedules/held.yaml").read_text()
    write(root, "schedules/held.yaml", text.replace("enabled: false", "enabled: true"))
    commit(root, "frank", "resume")
    apply_head(store, root, NOW)
    assert state_of(store, "held") == "awaiting-approval"


def test_a_rewritten_history_makes_the_new_tip_author_the_author(
    store: StateStore, tmp_path: Path
) -> None:
    from tests.gitutil import git

    root = make_repo(tmp_path / "repo", author="alice")
    apply_head(store, root, NOW)
    text = (root / "schedules/nightly.yaml").read_text()
    write(root, "schedules/nightly.yaml", text.replace("02:00", "01:00"))
    git(root, "add", "-A")
    git(root, "commit", "-q", "--amend", "-m", "rewritten", "--author=Erin <erin@example.com>")
    apply_head(store, root, NOW)
    rec = store.get_object("Schedule", "nightly")
    assert rec is not None and rec.authors == ("erin@example.com",)


def test_a_directory_that_is_not_a_git_repository_has_no_authors(
    store: StateStore, tmp_path: Path
) -> None:
    import shutil

    root = make_repo(tmp_path / "repo", author="alice")
    plain = tmp_path / "plain"
    shutil.copytree(root, plain, ignore=shutil.ignore_patterns(".git"))
    apply_head(store, plain, NOW)
    rec = store.get_object("Schedule", "nightly")
    assert rec is not None and rec.authors == () and rec.state == "awaiting-approval"
    [entry] = [e for e in approval_queue(store) if e.schedule == "nightly"]
    assert entry.author is None
    assert decide(store, "nightly", "alice", "approve", "cli", NOW).state == "active"
