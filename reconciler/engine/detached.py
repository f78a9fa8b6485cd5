"""Execute one queued run in a process of its own: ``python -m reconciler.engine.detached``.

``reconciler run`` without ``--wait`` starts this in a new session and writes the run's
caller values and secrets to its stdin (never argv, environment or disk), so the run goes on
after the command returns.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from datetime import UTC, datetime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="reconciler-run-worker")
    ap.add_argument("run_id", type=int)
    ap.add_argument("--state", required=True)
    args = ap.parse_args(argv)
    payload = json.loads(sys.stdin.read() or "{}")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # execute_run cancels the run and records it as cancelled

    signal.signal(signal.SIGTERM, stop)
    from reconciler.engine.planning import open_state
    from reconciler.engine.running import execute_run
    from reconciler.executors.ansible import AnsibleExecutor

    with open_state(args.state) as store:
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
            )
    return 0 if final.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
