"""Working: a pool of workers that claim queued runs, execute them and record the outcome.

Who calls it: the daemon (``serve --workers N``). Each worker is a thread with its own store
connection: it claims the oldest due run (``claim_next_run``, ``SKIP LOCKED`` on PostgreSQL),
executes it through the executor port (Ansible, or the fake in tests that need thousands of
runs), renews the lease from a heartbeat thread while it runs, cancels it when a cancel is
requested or its lease is lost, and records the outcome in one fenced transaction: a worker
that lost its lease (stopped past it, then resumed) records nothing over the run the reaper
marked ``abandoned``.

The lease token is the worker id itself, new for every claim (``replica/wN/nonce``), so a
worker can never renew or finish a claim that is not its own.
"""

from __future__ import annotations

import logging
import secrets as _secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.clock import Clock
from reconciler.errors import ReconcilerError, StateError
from reconciler.stores.base import RunRecord, StateStore

log = logging.getLogger("reconciler.work")

#: How long a claim is leased before it must be renewed; the heartbeat renews it every
#: quarter of that, so a run whose worker died is found within this much (SPEC: two minutes).
LEASE_SECONDS = 60.0

RunExecutor = Callable[[StateStore, RunRecord, "Lease"], RunRecord | None]
"""Executes one claimed run and records it (see :func:`reconciler.engine.runs.execute`)."""


@dataclass
class Lease:
    """A claim held by one worker: the token it must present, and what its heartbeat found."""

    worker_id: str
    lease_seconds: float
    cancelled: threading.Event
    lost: threading.Event


class WorkerPool:
    """``count`` workers on one replica. ``open_store`` gives each worker its own connection."""

    def __init__(
        self,
        open_store: Callable[[], StateStore],
        execute: RunExecutor,
        clock: Clock,
        replica: str,
        count: int,
        *,
        lease_seconds: float = LEASE_SECONDS,
        idle_poll: float = 1.0,
        on_state_error: Callable[[StateError], None] | None = None,
    ) -> None:
        self.on_state_error = on_state_error
        self.open_store = open_store
        self.execute = execute
        self.clock = clock
        self.replica = replica
        self.count = count
        self.lease_seconds = lease_seconds
        self.idle_poll = idle_poll
        self.work = threading.Event()
        self.claiming = threading.Event()
        self.claiming.set()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.active: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self.executed = 0

    def start(self) -> None:
        for i in range(self.count):
            t = threading.Thread(target=self._work, args=(i,), name=f"worker-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def poke(self) -> None:
        """Runs were queued: wake an idle worker now instead of at its next poll."""
        self.work.set()

    def stop_claiming(self) -> None:
        self.claiming.clear()
        self.work.set()

    def running(self) -> int:
        with self._lock:
            return len(self.active)

    def cancel_all(self) -> None:
        """Cancel every run in progress (the end of the drain)."""
        with self._lock:
            for lease in self.active.values():
                lease.cancelled.set()

    def join(self, timeout: float) -> bool:
        """Wait for the workers to finish (after :meth:`stop_claiming`); True when all did."""
        self.stopping.set()
        self.work.set()
        end = self.clock.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, end - self.clock.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def _work(self, index: int) -> None:
        store = self.open_store()
        try:
            while self.claiming.is_set():
                worker_id = f"{self.replica}/w{index}/{_secrets.token_hex(4)}"
                try:
                    run = store.claim_next_run(worker_id, self.lease_seconds, self.clock.now())
                except StateError as e:
                    if self.on_state_error is not None:
                        self.on_state_error(e)
                    else:
                        log.warning("worker %d cannot claim runs: %s", index, e)
                    self.stopping.wait(self.idle_poll * 5)
                    continue
                if run is None:
                    self.work.wait(self.idle_poll)
                    self.work.clear()
                    continue
                lease = Lease(worker_id, self.lease_seconds, threading.Event(), threading.Event())
                with self._lock:
                    self.active[run.id] = lease
                try:
                    self.execute(store, run, lease)
                except ReconcilerError as e:
                    log.warning("run %d failed to execute: %s", run.id, e)
                except Exception:  # a bug must not take the worker down with it
                    log.exception("run %d: unexpected error in the worker", run.id)
                finally:
                    with self._lock:
                        self.active.pop(run.id, None)
                    self.executed += 1
        finally:
            store.close()


class Heartbeat:
    """Renews one run's lease every quarter of it (at most every 2 s) while it executes; sets
    ``lease.cancelled`` when a cancel was requested and ``lease.lost`` when the lease is gone,
    calling ``on_stop`` once in either case (the executor's cancel)."""

    def __init__(
        self,
        store: StateStore,
        run_id: int,
        lease: Lease,
        clock: Clock,
        on_stop: Callable[[], None],
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.lease = lease
        self.clock = clock
        self.on_stop = on_stop
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(5)

    def _beat(self) -> None:
        # Renew often enough that a cancel asked from another process (``reconciler cancel``,
        # the API) is seen within two seconds; a cancel from this process within 0.2 s.
        every = max(0.05, min(self.lease.lease_seconds / 4, 2.0))
        next_renew = self.clock.monotonic() + every
        stopped = False
        while not self.done.wait(0.2):
            if stopped:
                continue
            if self.lease.cancelled.is_set():
                stopped = True
                self.on_stop()
                continue
            if self.clock.monotonic() < next_renew:
                continue
            next_renew = self.clock.monotonic() + every
            try:
                answer = self.store.heartbeat(
                    self.run_id, self.lease.worker_id, self.lease.lease_seconds, self.clock.now()
                )
            except StateError as e:
                log.warning("run %d: cannot renew its lease: %s", self.run_id, e)
                continue
            if answer == "ok":
                continue
            if answer == "cancel":
                self.lease.cancelled.set()
            else:
                self.lease.lost.set()
            stopped = True
            self.on_stop()
