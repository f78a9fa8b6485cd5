"""Execute one queued run in a process of its own: ``python -m reconciler.engine.detached``.

``reconciler run`` without ``--wait`` starts this with :func:`start`, in a new session, and
writes the state URL, the run's caller values and secrets to its stdin (never argv,
environment or disk), so
the run goes on after the command returns. Its environment is the command's, without any
variable that Git names as a secret (``valueFrom: {env: ...}`` and the like) or that holds one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.executors.environment import scrubbed_environment


def start(
    run_id: int,
    state: str,
    secrets: Mapping[str, str],
    untrusted: Mapping[str, Any],
    hidden_env: Collection[str],
    *,
    from_state: bool = False,
) -> None:
    """Start the process that executes the queued run ``run_id``; returns at once.
    ``from_state``: it resolves the run's values from the applied state (a retry)."""
    proc = subprocess.Popen(
        # the state URL (which may hold a database password) goes on stdin, never on argv
        [sys.executable, "-m", "reconciler.engine.detached", str(run_id), "--state-on-stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
        env=scrubbed_environment(os.environ, hidden_env, secrets.values()),
    )
    assert proc.stdin is not None
    proc.stdin.write(
        json.dumps(
            {
                "state": state,
                "secrets": dict(secrets),
                "untrusted": dict(untrusted),
                "from_state": from_state,
            }
        )
    )
    proc.stdin.close()


def main(argv: list[str] | None = None) -> int:
    # first of all: from here on a signal (SIGTERM is how users stop a background run) cancels
    # the run, whenever it arrives: execute_run looks at `stop` between its steps
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        # one the process was started ignoring stays ignored (engine.running's rule; not
        # imported here, where every millisecond before the handlers counts)
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, lambda *_: stop.set())
    ap = argparse.ArgumentParser(prog="reconciler-run-worker")
    ap.add_argument("run_id", type=int)
    ap.add_argument("--state-on-stdin", action="store_true")
    args = ap.parse_args(argv)
    payload = json.loads(sys.stdin.read() or "{}")
    state = str(payload.get("state") or "")
    if not state:
        return 2
    from reconciler.engine.planning import open_state
    from reconciler.engine.running import execute_run
    from reconciler.executors.ansible import AnsibleExecutor

    with open_state(state) as store:
        run = store.get_run(args.run_id)
        if run is None:
            return 1
        with AnsibleExecutor(prefork=False) as executor:
            final = execute_run(
                store,
                run,
                executor,
                payload.get("secrets", {}),
                payload.get("untrusted", {}),
                lambda: datetime.now(UTC),
                cancel=stop,
                from_state=bool(payload.get("from_state")),
            )
    return 0 if final.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
