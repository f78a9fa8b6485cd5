"""A reconcile pass on real Git repositories: a bad commit, a deleted tracked branch and a
force-push that rewinds the branch all stall with one clear message, and the last good state
stays in force; a newer good commit moves on."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.clock import ManualClock
from reconciler.engine.daemon import PassLog
from reconciler.engine.reconciling import PassResult, ReconcileLoop, reconcile_once
from reconciler.errors import RevisionNotFound
from reconciler.stores import open_store
from tests.gitutil import git

from .conftest import apply_dir, schedule, write_repo

T0 = datetime(2026, 6, 15, 10, tzinfo=UTC)


def _commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def _repo(tmp_path: Path) -> tuple[Path, str]:
    repo = write_repo(tmp_path / "repo", {"a": schedule("a", '{cron: "0 3 * * *"}')})
    git(repo, "init", "-q", "-b", "main")
    return repo, _commit(repo, "initial")


def test_a_rewound_branch_stalls_and_keeps_the_newer_state(tmp_path: Path) -> None:
    repo, first = _repo(tmp_path)
    clock = ManualClock(T0)
    with open_store(tmp_path / "state.sqlite") as store:
        assert reconcile_once(store, str(repo), clock).outcome == "applied"
        (repo / "schedules" / "b.yaml").write_text(schedule("b", '{cron: "0 4 * * *"}'))
        second = _commit(repo, "b")
        assert reconcile_once(store, str(repo), clock).outcome == "applied"
        git(repo, "reset", "-q", "--hard", first)  # a force-push back to the first commit
        stalled = reconcile_once(store, str(repo), clock)
        assert stalled.outcome == "stalled"
        assert "rewound" in stalled.message and second[:12] in stalled.message
        assert store.info().revision == second
        assert store.get_object("Schedule", "b") is not None
        attempt = store.last_attempt()
        assert attempt is not None and not attempt.ok and attempt.revision == first
        # a new commit on top moves on
        (repo / "schedules" / "c.yaml").write_text(schedule("c", '{cron: "0 5 * * *"}'))
        third = _commit(repo, "c")
        assert reconcile_once(store, str(repo), clock).outcome == "applied"
        assert store.info().revision == third


def test_a_deleted_tracked_branch_stalls_the_loop_with_one_line(tmp_path: Path) -> None:
    repo, first = _repo(tmp_path)
    clock = ManualClock(T0)
    with open_store(tmp_path / "state.sqlite") as store:
        assert reconcile_once(store, str(repo), clock).outcome == "applied"
        git(repo, "checkout", "-q", "--detach")
        git(repo, "branch", "-q", "-D", "main")
        with pytest.raises(RevisionNotFound, match='branch "main" does not exist'):
            reconcile_once(store, str(repo), clock)
        results = []
        loop = ReconcileLoop(store, str(repo), clock, on_result=results.append)
        loop.request()
        t = threading.Thread(target=loop.run_forever, daemon=True)
        t.start()
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while not results and datetime.now(UTC) < deadline:
            t.join(0.05)
        loop.stop()
        t.join(10)
        assert results and results[0].outcome == "stalled"
        assert 'branch "main" does not exist' in results[0].message
        assert store.info().revision == first
        attempt = store.last_attempt()
        assert (
            attempt is not None and not attempt.ok and "does not exist" in (attempt.message or "")
        )


def test_the_log_says_each_revision_and_stall_once_not_at_every_poll(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """serve polls every minute: a pass that finds the same revision in force, or the same
    stall, logs at debug; a new revision, a stall and the recovery from it log once each."""
    repo, _ = _repo(tmp_path)
    clock = ManualClock(T0)
    said = PassLog()

    def lines() -> list[tuple[str, str]]:
        out = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno > logging.DEBUG]
        caplog.clear()
        return out

    with (
        open_store(tmp_path / "state.sqlite") as store,
        caplog.at_level(logging.DEBUG, logger="reconciler.daemon"),
    ):
        said(reconcile_once(store, str(repo), clock))
        [(level, text)] = lines()
        assert level == "INFO" and text.startswith("applied")
        for _ in range(3):  # polls that find the revision applied
            said(reconcile_once(store, str(repo), clock))
        assert lines() == []
        (repo / "schedules" / "bad.yaml").write_text(schedule("bad", '{cron: "0 99 * * *"}'))
        _commit(repo, "bad")
        said(reconcile_once(store, str(repo), clock))
        stalled = lines()
        assert stalled and all(level == "ERROR" for level, _ in stalled)
        assert stalled[0][1].startswith("stalled:") and "bad.yaml" in "".join(
            t for _, t in stalled[1:]
        )
        for _ in range(3):  # polls that find the same invalid commit
            said(reconcile_once(store, str(repo), clock))
        assert lines() == []
        (repo / "schedules" / "bad.yaml").unlink()
        _commit(repo, "fixed")
        said(reconcile_once(store, str(repo), clock))
        [(level, text)] = lines()
        assert level == "INFO" and text.startswith("applied")
    # a new process (serve restarted on the stalled state) says where it stands once
    fresh = PassLog()
    with (
        open_store(tmp_path / "state.sqlite") as store,
        caplog.at_level(logging.DEBUG, logger="reconciler.daemon"),
    ):
        fresh(reconcile_once(store, str(repo), clock))
        [(level, text)] = lines()
        assert level == "INFO" and "is applied" in text


def test_two_different_stalls_without_a_revision_are_both_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The loop reports a stall with no revision (the branch is gone, the path is gone) only
    when its error changes; each of those reaches the log."""
    said = PassLog()
    with caplog.at_level(logging.DEBUG, logger="reconciler.daemon"):
        said(PassResult("stalled", None, 'cannot read the desired state: branch "main" is gone'))
        said(PassResult("stalled", None, "cannot read the desired state: /srv/repo is gone"))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "/srv/repo" in errors[1], errors


def test_the_history_counts_what_the_apply_message_says(tmp_path: Path) -> None:
    """The example repository's first apply also writes the reconciler's own objects (where
    the repository is, the server list); the history's counts are the plan's, as its message."""
    root = Path(__file__).resolve().parents[2] / "example-repo"
    with open_store(tmp_path / "state.sqlite") as store:
        apply_dir(store, root, T0)
        (entry,) = store.history()
    assert entry.message == "15 created, 0 updated, 0 deleted"
    assert (entry.created, entry.updated, entry.deleted) == (15, 0, 0)
