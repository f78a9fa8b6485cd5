"""The daemon behind ``reconciler serve``: starts the loops, heartbeats the replica, drains.

Threads of one replica, each with its own store connection (a slow query of one never delays
another's lease renewal):

* reconcile (:class:`~reconciler.engine.reconciling.ReconcileLoop`), asked for a pass by the
  watcher (a local repository's refs), the poll timer (``--poll``) and, later, forge webhooks;
* firing (:class:`~reconciler.engine.firing.FiringLoop`), poked after every apply;
* ``--workers`` workers (:class:`~reconciler.engine.working.WorkerPool`), woken when runs are
  queued;
* housekeeping: the replica heartbeat, reaping of runs whose worker died, and a look at the
  state's serial (a change by another replica or command re-arms the firing loop), every 5 s;
* notify (:class:`~reconciler.engine.notifying.Sender`): delivers the outbox's notifications;
* webhooks (:class:`~reconciler.engine.webhooks.WebhookProcessor`): forge review deliveries,
  woken when the HTTP server accepts one and every 5 s (deliveries other replicas accepted);
* the HTTP server (uvicorn, in a thread).

:meth:`Daemon.shutdown` (SIGTERM/SIGINT): stop firing and claiming, let running runs finish
within ``grace``, cancel what is left (recorded ``cancelled``), stop the server, exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from reconciler.clock import Clock
from reconciler.engine.firing import SWITCH_INTERVAL, FiringLoop
from reconciler.engine.notifying import Sender, notify_reaped
from reconciler.engine.reconciling import PassResult, ReconcileLoop
from reconciler.engine.telemetry import NullTelemetry, Telemetry
from reconciler.engine.webhooks import WebhookProcessor
from reconciler.engine.working import Lease, WorkerPool
from reconciler.errors import ReconcilerError, StateError
from reconciler.executors.spec import Executor
from reconciler.stores.base import Replica, RunRecord, StateStore, SystemJob

log = logging.getLogger("reconciler.daemon")

HOUSEKEEPING_EVERY = 5.0
PRUNE_EVERY = 3600.0


@dataclass
class DaemonConfig:
    repo: str
    open_store: Callable[[], StateStore]
    clock: Clock
    executor: Executor
    workers: int
    poll: timedelta = timedelta(seconds=60)
    grace: timedelta = timedelta(seconds=30)
    lease_seconds: float = 60.0
    late_after: timedelta = timedelta(seconds=60)
    """A slot found later than this after its fire time was missed (the misfire policy decides)."""
    watch: bool = True
    notify_claim_seconds: float = 30.0
    """How long a sender's claim on a notification holds (a crashed sender's rows go out
    again after it)."""
    notify_backoff_first: float = 2.0
    """The first retry of a failed delivery waits up to this; see engine/notifying.py."""
    replica_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    )
    telemetry: Telemetry = field(default_factory=NullTelemetry)
    """Hears of the slots recorded, the runs finished and the reconcile passes (``/metrics``)."""


class StateHealth:
    """One log line when the state becomes unreachable (whichever loop notices first), one when
    it is back; the loops retry on their own meanwhile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: str | None = None

    def down(self, area: str, error: Exception) -> None:
        with self._lock:
            if self._down is not None:
                return
            self._down = area
        log.warning("the state is unreachable (%s: %s); retrying until it is back", area, error)

    def up(self) -> None:
        with self._lock:
            if self._down is None:
                return
            self._down = None
        log.info("the state is reachable again")

    @property
    def is_down(self) -> bool:
        return self._down is not None


class PassLog:
    """Logs the result of each reconcile pass. A pass that finds what the one before found
    (the same revision in force, the same stall, the same pending change) logs at debug, so a
    daemon polling every minute does not repeat "is applied" or a stall's diagnostics each
    time; ``status`` keeps them. A pass that wrote something always logs, and so does a stall
    with no revision (the branch or repository cannot be read): the loop reports those only
    when the error changes."""

    def __init__(self) -> None:
        self._last: tuple[str, str | None] | None = None

    def __call__(self, result: PassResult) -> None:
        kind = "in force" if result.outcome in ("applied", "unchanged") else result.outcome
        key = (kind, result.revision)
        if key == self._last and not result.changed and result.revision is not None:
            log.debug("%s", result.message)
            return
        self._last = key
        if result.outcome == "stalled":
            log.error("stalled: %s", result.message)
            for d in result.diagnostics[:20]:
                log.error(
                    "  %s:%s:%s: %s[%s]: %s",
                    d.path,
                    d.line,
                    d.column,
                    d.severity.value,
                    d.code,
                    d.message,
                )
        else:
            log.info("%s", result.message)


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        from reconciler.engine.runs import execute_claimed

        self.config = config
        c = config
        self.started = c.clock.now()
        self.health = StateHealth()
        self.pass_log = PassLog()
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        # tens of thousands of armed schedules live as long as the process: keep the
        # collector's full passes (tens of ms, a jump in fire lateness) from walking them
        self.firing = FiringLoop(
            c.open_store(),
            c.clock,
            self._queued,
            grace=c.late_after,
            telemetry=c.telemetry,
            freeze_armed=True,
            defer_flush=True,
            write_ahead=True,
        )
        self.reconcile = ReconcileLoop(
            c.open_store(),
            c.repo,
            c.clock,
            self.firing.poke,
            self.pass_log,
            poll_seconds=c.poll.total_seconds(),
            telemetry=c.telemetry,
        )

        def execute(store: StateStore, run: RunRecord, lease: Lease) -> RunRecord | None:
            try:
                final = execute_claimed(store, run, lease, c.executor, c.clock)
            except Exception:
                # it could not be executed and was recorded failed (unless its lease was lost)
                with contextlib.suppress(ReconcilerError):
                    failed = store.get_run(run.id)
                    if failed is not None and failed.status == "failed":
                        self._finished(failed)
                raise
            if final is not None:
                self._finished(final)
                log.info(
                    "run %d (%s) %s: %s",
                    final.id,
                    final.template,
                    final.status,
                    final.message or "",
                )
            return final

        self.workers = WorkerPool(
            c.open_store,
            execute,
            c.clock,
            c.replica_id,
            c.workers,
            lease_seconds=c.lease_seconds,
            on_state_error=lambda e: self.health.down("workers", e),
        )
        self._house = c.open_store()
        self._serial: int | None = None
        self.sender = self._sender()
        self.webhooks = WebhookProcessor(c.open_store(), c.repo, c.clock)

    def _sender(self) -> Sender:
        c = self.config
        return Sender(
            c.open_store(),
            c.clock,
            c.replica_id,
            claim_seconds=c.notify_claim_seconds,
            backoff_first=c.notify_backoff_first,
        )

    # -- callbacks between the loops

    def _queued(self, runs: Sequence[RunRecord]) -> None:
        if len(runs) > 10:  # a burst: one line, not one per run
            names = sorted({r.schedule or "" for r in runs})
            log.info(
                "%d runs queued for %d schedule(s) (%s%s)",
                len(runs),
                len(names),
                ", ".join(names[:5]),
                ", ..." if len(names) > 5 else "",
            )
            self.workers.poke()
            return
        for r in runs:
            log.info(
                "slot %s of %s: run %d queued (%s)",
                r.slot.isoformat() if r.slot else "-",
                r.schedule,
                r.id,
                r.trigger,
            )
        self.workers.poke()

    def _finished(self, run: RunRecord, timed: bool = True) -> None:
        """Report a run that reached its final status here (``timed``: it executed here)."""
        took = None
        if timed and run.started_at is not None and run.finished_at is not None:
            took = (run.finished_at - run.started_at).total_seconds()
        self.config.telemetry.run_finished(run.template, run.status, took)

    def request_reconcile(self, reason: str) -> None:
        """Ask for a reconcile pass (a forge push, an API call); passes coalesce."""
        log.info("reconcile requested: %s", reason)
        self.reconcile.request()

    def firing_behind(self) -> float | None:
        """Seconds the firing loop is behind its due fire time (None: nothing armed); any
        thread may ask."""
        return self.firing.behind(self.config.clock.now())

    # -- lifecycle

    def _thread(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def start(self) -> None:
        c = self.config
        sys.setswitchinterval(SWITCH_INTERVAL)  # the firing thread waits less for the others
        self._beat()
        self.reconcile.request()
        self._thread(self.reconcile.run_forever, "reconcile")
        self._thread(
            lambda: self.firing.run_forever(lambda e: self.health.down("firing", e)), "firing"
        )
        self.workers.start()
        self._thread(self._housekeeping, "housekeeping")
        self._thread(
            lambda: self.sender.run_forever(lambda e: self.health.down("notify", e)), "notify"
        )
        self._thread(
            lambda: self.webhooks.run_forever(lambda e: self.health.down("webhooks", e)),
            "webhooks",
        )
        self._thread(self._poll, "poll")
        if c.watch:
            self._start_watcher()

    def _start_watcher(self) -> None:
        from reconciler.sources import git
        from reconciler.sources.watcher import watch_git_refs, watch_tree

        repo = self.config.repo
        if git.is_url(repo):
            return
        try:
            git_dir = git.GitSource(repo).git_dir
        except ReconcilerError:
            self._thread(
                lambda: watch_tree(Path(repo), self.reconcile.request, self.stopping), "watch"
            )
            return
        self._thread(
            lambda: watch_git_refs(Path(git_dir), self.reconcile.request, self.stopping), "watch"
        )

    def _poll(self) -> None:
        every = self.config.poll.total_seconds()
        while not self.stopping.wait(every):
            self.reconcile.request()

    def _beat(self) -> None:
        c = self.config
        self._house.beat_replica(
            Replica(
                c.replica_id,
                socket.gethostname(),
                os.getpid(),
                self.started,
                c.clock.now(),
                c.workers,
            )
        )

    def _housekeeping(self) -> None:
        next_prune = self.config.clock.monotonic()
        while not self.stopping.wait(HOUSEKEEPING_EVERY):
            try:
                self._beat()
                self.health.up()
                serial = self._house.serial()
                if serial != self._serial:
                    # another replica (or reconciler apply, an approval) changed the applied
                    # schedules: this replica's firing loop arms them too
                    self._serial = serial
                    self.firing.poke()
                now = self.config.clock.now()
                reaped = self._house.reap_runs(now)
                for run_id in reaped:
                    log.warning("run %d abandoned: its worker stopped renewing the lease", run_id)
                    gone = self._house.get_run(run_id)
                    if gone is not None:
                        self._finished(gone, timed=False)
                if reaped:
                    notify_reaped(self._house, reaped, now)
                self._house.record_system(
                    SystemJob(
                        "reap-abandoned",
                        HOUSEKEEPING_EVERY,
                        now,
                        f"{len(reaped)} run(s) abandoned" if reaped else None,
                    )
                )
                if self.config.clock.monotonic() >= next_prune:
                    next_prune = self.config.clock.monotonic() + PRUNE_EVERY
                    self._prune(now)
            except StateError as e:
                self.health.down("housekeeping", e)
            except ReconcilerError as e:
                log.warning("housekeeping: %s", e)

    def _prune(self, now: datetime) -> None:
        from reconciler.model.documents import Settings
        from reconciler.planning.plan import SETTINGS_NAME

        rec = self._house.get_object("Settings", SETTINGS_NAME)
        history = (
            Settings.model_validate_json(rec.body).spec.history
            if rec
            else Settings.model_validate(
                {"apiVersion": "reconciler/v1", "kind": "Settings", "spec": {}}
            ).spec.history
        )
        n = self._house.prune_history(history.keep_runs, history.keep_days, now)
        self._house.prune_deliveries(now - timedelta(days=history.keep_days))
        if n:
            log.info(
                "pruned %d run(s) beyond history keepRuns %d / keepDays %d",
                n,
                history.keep_runs,
                history.keep_days,
            )
        self._house.record_system(
            SystemJob(
                "prune-history",
                PRUNE_EVERY,
                now,
                f"keepRuns {history.keep_runs}, keepDays {history.keep_days}: {n} pruned",
            )
        )

    def shutdown(self) -> bool:
        """Drain: stop firing and claiming, wait up to ``grace`` for running runs, cancel the
        rest. True when every worker ended within the grace period."""
        c = self.config
        self.stopping.set()
        self.firing.stop()
        self.reconcile.stop()
        self.sender.stop()
        self.webhooks.stop()
        self.workers.stop_claiming()
        running = self.workers.running()
        if running:
            log.info(
                "draining: waiting up to %.0f s for %d running run(s)",
                c.grace.total_seconds(),
                running,
            )
        clean = self.workers.join(c.grace.total_seconds())
        if not clean:
            log.warning("grace period over: cancelling %d run(s)", self.workers.running())
            self.workers.cancel_all()
            self.workers.join(30)
        for t in self._threads:
            t.join(2)
        try:  # after the housekeeping thread ended, so no late heartbeat brings the row back
            self._house.remove_replica(c.replica_id)
        except ReconcilerError as e:
            log.warning("cannot remove the replica row: %s", e)
        return clean
