"""The ``status`` read model (SPEC section 4): applied and attempted revisions, replicas alive,
the run queue. Shared by ``reconciler status`` and ``GET /api/status``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from reconciler.stores.base import StateStore

#: A replica is alive while its heartbeat is this recent (it beats every 5 s).
REPLICA_TTL = timedelta(seconds=30)


def status_json(store: StateStore, now: datetime) -> dict[str, Any]:
    info = store.info()
    attempt = store.last_attempt()
    return {
        "applied": {
            "revision": info.revision,
            "serial": info.serial,
            "at": info.applied_at.isoformat() if info.applied_at else None,
            "signing_key": info.signing_key,
        },
        "attempted": None
        if attempt is None
        else {
            "revision": attempt.revision,
            "at": attempt.at.isoformat(),
            "ok": attempt.ok,
            "diagnostics": [dict(d) for d in attempt.diagnostics],
            "message": attempt.message,
        },
        "replicas": [
            {
                "id": r.id,
                "host": r.host,
                "pid": r.pid,
                "workers": r.workers,
                "started": r.started.isoformat(),
                "seen": r.seen.isoformat(),
            }
            for r in store.list_replicas(now - REPLICA_TTL)
        ],
        "queue": store.queue_counts(),
    }
