"""Code run in child processes by the concurrency tests (kept light to start quickly)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from reconciler.errors import StateConflict
from reconciler.stores import ObjectWrite, open_store

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def apply_many(url: str, tag: str, count: int, ready: Any, start: Any, results: Any) -> None:
    """Open the state, read its serial, say so, wait for the start signal, then apply
    ``count`` objects tagged ``tag`` against that serial."""
    store = open_store(url, lock_timeout=30)
    try:
        serial = store.serial()
        upserts = [
            ObjectWrite("Schedule", f"s-{i:05d}", f"hash-{tag}", json.dumps({"by": tag}))
            for i in range(count)
        ]
        ready.put(tag)
        start.wait(30)
        try:
            new = store.apply_changes(serial, f"rev-{tag}", upserts, [], NOW)
            results.put((tag, "applied", new))
        except StateConflict as e:
            results.put((tag, "conflict", str(e)))
    except BaseException as e:  # report, so the parent fails with a reason
        results.put((tag, "error", repr(e)))
    finally:
        store.close()


def claim_and_wait(url: str, run_id: int, results: Any) -> None:
    """Claim ``run_id`` as this process (``host:pid``), say so, then wait to be killed."""
    import os
    import socket
    import time

    store = open_store(url, lock_timeout=30)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    claimed = store.claim_run(run_id, worker, 30, NOW)
    results.put(("claimed" if claimed else "not claimed", worker))
    time.sleep(120)
