"""What every HTTP route needs from the daemon, in one value (built by ``serve``).

Routes read and write the state through their own store connections (one per server thread,
never the loops' connections), so a slow request never delays firing or a lease renewal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.clock import Clock
from reconciler.engine.telemetry import NullTelemetry, Telemetry
from reconciler.stores.base import StateStore

DEFAULT_BODY_LIMIT = 3 * 1024 * 1024
"""Request bodies larger than this are answered 413 before they are read (webhooks: 3 MiB)."""


@dataclass
class Health:
    """What ``/healthz`` reports besides the store: the firing loop's lag."""

    firing_behind: Callable[[], float | None]
    """Seconds the firing loop is behind its earliest due fire time (None: not firing here)."""
    behind_limit: float = 60.0
    """Seconds behind after which firing is unhealthy: ``serve`` passes the lateness after
    which a slot counts as missed (its misfire policy decides), 60 s by default."""


def _nothing(reason: str) -> None:
    return None


def _noop() -> None:
    return None


@dataclass
class ApiContext:
    """The daemon as the HTTP edge sees it."""

    open_store: Callable[[], StateStore]
    clock: Clock
    health: Health
    repo: str = "."
    """The REPO that ``serve`` reconciles (a path or a Git URL without credentials)."""
    replica_id: str = ""
    request_reconcile: Callable[[str], None] = _nothing
    """Ask the reconcile loop for a pass (the argument says why, for the log)."""
    wake_workers: Callable[[], None] = _noop
    """Tell the local workers that a run was queued."""
    process_deliveries: Callable[[], None] = _noop
    """Tell the daemon's webhook processing that a forge delivery waits for it."""
    body_limit: int = DEFAULT_BODY_LIMIT
    telemetry: Telemetry = field(default_factory=NullTelemetry)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def store(self) -> StateStore:
        """This thread's store connection (opened on first use, kept for the thread's life)."""
        s: StateStore | None = getattr(self._local, "store", None)
        if s is None:
            s = self._local.store = self.open_store()
        return s
