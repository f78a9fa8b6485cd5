"""The watcher on a path that is not there (a volume not mounted yet, a typo): one warning,
not one per retry, and it watches the path once it appears."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from reconciler.sources.watcher import watch_tree


def test_a_missing_path_warns_once_and_is_watched_once_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "repo"
    changes = threading.Event()
    stop = threading.Event()
    t = threading.Thread(
        target=watch_tree, args=(root, changes.set, stop, 0.05), name="watch", daemon=True
    )
    with caplog.at_level(logging.INFO, logger="reconciler.watch"):
        t.start()
        try:
            time.sleep(1.0)  # some twenty retries
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
            assert "cannot watch" in warnings[0].getMessage()
            assert "no such file or directory" in warnings[0].getMessage()
            # a missing path says nothing of inotify, which is used once the path is there
            assert not any("inotify" in r.getMessage() for r in caplog.records)
            root.mkdir()
            deadline = time.monotonic() + 10
            while not changes.is_set() and time.monotonic() < deadline:
                (root / "schedule.yaml").write_text(f"at: {time.monotonic()}\n")
                changes.wait(0.2)
            assert changes.is_set(), "no change seen after the path appeared"
        finally:
            stop.set()
            t.join(10)
    assert not t.is_alive()
