"""A real ``serve`` killed with SIGKILL while it is sending a notification: after a restart
the receiver gets that delivery again, with the same delivery id, and nothing is lost."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from reconciler.stores import open_store
from tests.daemon.conftest import Serve, serves, until
from tests.gitutil import git

from .conftest import Receiver, notify_repo, schedule

__all__ = ["serves"]  # the fixture that stops every serve the test started


def test_a_sender_killed_mid_delivery_resends_the_same_delivery_id_after_a_restart(
    tmp_path: Path,
    receiver: Receiver,
    serves: list[Serve],
    hook_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECONCILER_TEST_NOTIFY_CLAIM_SECONDS", "1")
    monkeypatch.setenv("RECONCILER_TEST_NOTIFY_BACKOFF", "0.05")
    root = notify_repo(
        tmp_path / "repo",
        receiver.url,
        {"once": schedule("once", "{at: '2020-01-01T00:00:00'}")},
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    state = str(tmp_path / "state.sqlite")
    receiver.delay = 60  # the first POST hangs: the sender is mid-delivery when it dies
    first = Serve(root, state, "--workers", "1")
    serves.append(first)
    until(lambda: receiver.got, 30, "the first delivery attempt")
    with open_store(state) as s:
        (row,) = s.list_notifications()
        assert row.status == "sending" and row.event == "success"
    first.signal(signal.SIGKILL)
    first.wait(10)
    receiver.delay = 0
    receiver.release.set()
    second = Serve(root, state, "--workers", "1")
    serves.append(second)

    def sent() -> bool:
        with open_store(state) as s:
            return s.notification_counts()["sent"] == 1

    until(sent, 30, "the notification marked sent after the restart")
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0
    ids = receiver.delivery_ids()
    assert len(ids) >= 2 and set(ids) == {row.delivery_id}
    assert all(d.valid for d in receiver.got)
    with open_store(state) as s:
        rows = s.list_notifications()
        assert [(r.delivery_id, r.status) for r in rows] == [(row.delivery_id, "sent")]
        # the run itself ran once: a restart re-sends its notification, not the run
        assert len(s.list_runs()) == 1
