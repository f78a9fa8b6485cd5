"""PostgreSQL restarted under a running daemon: it reconnects, records the slots that came due
meanwhile per their misfire policy, says so in one clear line, and never prints a traceback."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.stores import open_store

from .conftest import Serve, ledger_slots, make_repo, schedule, until


def _cluster() -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def _pg_ready() -> bool:
    done = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], check=False)
    return done.returncode == 0


@pytest.mark.slow
def test_the_daemon_rides_out_a_postgresql_restart(
    tmp_path: Path, pg_url: str, serves: list[Serve]
) -> None:
    repo = make_repo(tmp_path, {"beat": schedule("beat", "{every: 1s}", overlap="allow")})
    s = Serve(repo, pg_url, "--workers", "1", "--poll", "1h", fake="0.05")
    serves.append(s)
    with open_store(pg_url) as store:
        until(lambda: len(ledger_slots(store, "beat")) >= 3, 30, "firing before the restart")
    try:
        subprocess.run([*_cluster(), "stop", "-m", "fast"], check=True, timeout=60)
        time.sleep(3)  # down for three seconds
    finally:
        subprocess.run([*_cluster(), "start"], check=True, timeout=60)
    until(_pg_ready, 60, "PostgreSQL back")
    restarted = time.time()
    with open_store(pg_url) as store:
        until(
            lambda: store.fire_cursors()["beat"].last_slot.timestamp() > restarted + 3,
            60,
            "firing after the restart",
        )
        s.signal(signal.SIGTERM)
        assert s.wait(60) == 0
        slots = ledger_slots(store, "beat")
    assert len(slots) == len(set(slots))
    assert {b - a for a, b in itertools.pairwise(slots)} == {timedelta(seconds=1)}
    log = s.log.read_text()
    assert "Traceback" not in log
    # one line when the state went away, one when it came back; no line per retry
    assert log.count("the state is unreachable") == 1, log
    assert log.count("the state is reachable again") == 1, log
