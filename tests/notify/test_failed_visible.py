"""A notification that gives up after its last attempt is visible where an operator looks:
``GET /api/notifications?status=failed`` with the last error, the dashboard's status page, and
the ``reconciler_notifications_failed`` gauge of ``/metrics``. Through a real ``serve`` and a
real receiver that answers 500 every time."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from reconciler.stores import open_store
from tests.daemon.conftest import Serve, serves, until
from tests.gitutil import git

from .conftest import Receiver, notify_repo, schedule

__all__ = ["serves"]


def get(s: Serve, path: str) -> tuple[str, bytes]:
    req = urllib.request.Request(s.url + path, headers={"X-API-Key": s.key})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers.get("Content-Type", ""), r.read()


def test_a_notification_that_gave_up_is_listed_with_its_error_in_the_api_dashboard_and_metrics(
    tmp_path: Path,
    receiver: Receiver,
    serves: list[Serve],
    hook_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECONCILER_TEST_NOTIFY_BACKOFF", "0.02")
    receiver.plan = [500] * 6  # every attempt fails
    root = notify_repo(
        tmp_path / "repo", receiver.url, {"once": schedule("once", "{at: '2020-01-01T00:00:00'}")}
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    state = str(tmp_path / "state.sqlite")
    s = Serve(root, state, "--workers", "1")
    serves.append(s)

    def failed() -> bool:
        with open_store(state) as store:
            return store.notification_counts()["failed"] == 1

    until(failed, 60, "the notification to give up")
    assert len(receiver.got) == 6 and len(set(receiver.delivery_ids())) == 1
    _, body = get(s, "/api/notifications?status=failed")
    data = json.loads(body)
    (n,) = data["notifications"]
    assert (n["event"], n["status"], n["attempts"]) == ("success", "failed", 6)
    assert "500" in n["last_error"] and n["next_attempt"] is None
    assert data["counts"]["failed"] == 1
    # the dashboard's status page lists it (a read key signs the browser in)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(f"{s.url}/?key={s.key}", timeout=10) as r:
        assert r.status == 200
    with opener.open(f"{s.url}/status", timeout=10) as r:
        page = r.read().decode()
    assert "No notification has failed" not in page and "500" in page
    _, metrics = get(s, "/metrics")
    assert "reconciler_notifications_failed 1.0" in metrics.decode()
