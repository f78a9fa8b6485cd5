"""Cancelling a running run through the API: its worker stops it at its next heartbeat and
the run ends ``cancelled``, with who cancelled it in its message."""

from __future__ import annotations

import time
from pathlib import Path

from .conftest import start_api


def test_a_running_run_is_cancelled_by_its_worker_after_the_api_asks(tmp_path: Path) -> None:
    api = start_api(tmp_path, str(tmp_path / "state.sqlite"), "--workers", "1", fake="30")
    try:
        run = api.trigger("template=ping").body["run"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and api.call(run["url"]).body["status"] != "running":
            time.sleep(0.05)
        asked = api.call(f"{run['url']}/cancel", "POST", key="approver")
        assert asked.status == 200, asked.body
        assert asked.body["cancel_requested"] is True and asked.body["run"]["status"] == "running"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and api.call(run["url"]).body["status"] == "running":
            time.sleep(0.1)
        final = api.call(run["url"]).body
        assert final["status"] == "cancelled" and "API key approver" in (final["message"] or "")
    finally:
        api.serve.stop()
