"""The Prometheus metrics of one replica (the only prometheus_client user).

:class:`PrometheusTelemetry` implements the :class:`~reconciler.engine.telemetry.Telemetry`
port with a registry of its own (never the process-wide default one). Counters and histograms
are fed by this replica's loops as they record: each slot is recorded by exactly one replica
and each run finished by one, so the counters summed over replicas are exact. The gauges of
the shared state (the run queue, schedules by state, approvals waiting) are read at scrape
time through the store connection the caller passes (the HTTP route's own, never a loop's).

Who calls it: ``serve`` creates one and hands it to the daemon's loops and to the HTTP edge;
:mod:`reconciler.api.routes.metrics` renders it. Not pure: it holds the counters.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.errors import ReconcilerError
from reconciler.stores.base import StateStore

# ``*_created`` series double every counter for little use; this module is the process's only
# prometheus_client user, so turning them off here changes nothing else.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The Prometheus text format, version 0.0.4: every Prometheus reads it (the metric names are
plain ASCII, so the output is the same in the newer text versions)."""

FIRE_LAG_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Seconds from a slot's fire time to its ledger row committed: 0.5 ms to a minute (a slot
found more than a minute late counts as missed by default)."""

RUN_DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Seconds from a run's start to its end: 0.1 s to the default template timeout (1 h)."""


class PrometheusTelemetry:
    """What this replica's loops report, as Prometheus metrics (thread-safe)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self._slots = Counter(
            "reconciler_slots",
            "Slots recorded in the ledger by this replica, by schedule and outcome (run or "
            "skipped) and the skip reason (empty for a run); a range entry counts its slots.",
            ["schedule", "outcome", "reason"],
            registry=r,
        )
        self._fire_lag = Histogram(
            "reconciler_fire_lag_seconds",
            "Seconds from a schedule's due fire time to its ledger entry committed.",
            buckets=FIRE_LAG_BUCKETS,
            registry=r,
        )
        self._runs = Counter(
            "reconciler_runs",
            "Runs that reached a final status on this replica (its workers, its firing loop, "
            "its reaper of abandoned runs), by template and status.",
            ["template", "status"],
            registry=r,
        )
        self._duration = Histogram(
            "reconciler_run_duration_seconds",
            "Seconds from a run's start to its end, by template (runs that executed).",
            ["template"],
            buckets=RUN_DURATION_BUCKETS,
            registry=r,
        )
        self._webhooks = Counter(
            "reconciler_webhook_deliveries",
            "Forge webhook deliveries answered by this replica, by forge and outcome.",
            ["forge", "outcome"],
            registry=r,
        )
        self._last_success = Gauge(
            "reconciler_last_reconcile_success_timestamp_seconds",
            "When a reconcile pass last ended applied or up to date (Unix time; 0: never).",
            registry=r,
        )
        self._stalled = Gauge(
            "reconciler_reconcile_stalled",
            "1 while the tracked branch's head fails validation (the last good state stays in "
            "force), else 0.",
            registry=r,
        )
        self._state = _StateGauges()
        r.register(self._state)
        self._render = threading.Lock()

    # -- the Telemetry port

    def slot(self, schedule: str, outcome: str, reason: str | None, count: int = 1) -> None:
        self._slots.labels(schedule, outcome, reason or "").inc(count)

    def fire_lag(self, seconds: float) -> None:
        self._fire_lag.observe(max(0.0, seconds))

    def run_finished(self, template: str, status: str, seconds: float | None) -> None:
        self._runs.labels(template, status).inc()
        if seconds is not None:
            self._duration.labels(template).observe(max(0.0, seconds))

    def reconciled(self, ok: bool, at_epoch: float) -> None:
        if ok:
            self._last_success.set(at_epoch)
            self._stalled.set(0)
        else:
            self._stalled.set(1)

    def webhook(self, forge: str, outcome: str) -> None:
        self._webhooks.labels(forge, outcome).inc()

    # -- scraping

    def render(self, store: StateStore) -> bytes:
        """The text exposition, with the state's gauges read now through ``store`` (left out
        when the read fails: the counters are still worth a scrape)."""
        try:
            queue = store.queue_counts()
            states = store.state_counts("Schedule")
            outbox: dict[str, int] | None = store.notification_counts()
        except ReconcilerError:
            queue, states, outbox = None, None, None
        with self._render:
            self._state.queue, self._state.states = queue, states
            self._state.outbox = outbox
            try:
                return generate_latest(self.registry)
            finally:
                self._state.queue, self._state.states, self._state.outbox = None, None, None


class _StateGauges(Collector):
    """The gauges of the shared state, as :meth:`PrometheusTelemetry.render` read them."""

    def __init__(self) -> None:
        self.queue: dict[str, int] | None = None
        self.states: dict[str, int] | None = None
        self.outbox: dict[str, int] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.queue is not None:
            runs = GaugeMetricFamily(
                "reconciler_runs",
                "Runs queued and running now, in the whole state (every replica).",
                labels=["status"],
            )
            for status in ("queued", "running"):
                runs.add_metric([status], self.queue.get(status, 0))
            yield runs
        if self.states is not None:
            schedules = GaugeMetricFamily(
                "reconciler_schedules",
                "Applied schedules by state, in the whole state.",
                labels=["state"],
            )
            for state, n in sorted(self.states.items()):
                schedules.add_metric([state], n)
            yield schedules
            yield GaugeMetricFamily(
                "reconciler_approvals_waiting",
                "Schedules waiting for approval (state awaiting-approval) now.",
                value=self.states.get("awaiting-approval", 0),
            )
        if self.outbox is not None:
            notifications = GaugeMetricFamily(
                "reconciler_notifications",
                "Notifications in the outbox by status, in the whole state (every replica).",
                labels=["status"],
            )
            for status in ("pending", "sending", "sent", "failed"):
                notifications.add_metric([status], self.outbox.get(status, 0))
            yield notifications
            yield GaugeMetricFamily(
                "reconciler_notifications_failed",
                "Notifications that gave up after their last attempt (kept until pruned).",
                value=self.outbox.get("failed", 0),
            )
