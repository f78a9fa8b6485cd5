"""What the loops report for ``GET /metrics``: a narrow port, so no loop knows Prometheus.

The daemon's loops and the HTTP routes call a :class:`Telemetry`; ``serve`` passes the
Prometheus implementation of :mod:`reconciler.api.metrics`, tests and one-shot commands the
:class:`NullTelemetry`. Every call reports an event that this replica itself recorded, so
counters summed over replicas are exact (each slot is recorded by exactly one replica).
"""

from __future__ import annotations

from typing import Protocol


class Telemetry(Protocol):
    def slot(self, schedule: str, outcome: str, reason: str | None, count: int = 1) -> None:
        """``count`` slots of ``schedule`` recorded: outcome ``run`` or ``skipped`` (reason)."""

    def fire_lag(self, seconds: float) -> None:
        """From a slot's ``fire_at`` to its ledger row committed, in seconds."""

    def run_finished(self, template: str, status: str, seconds: float | None) -> None:
        """A run reached a final status; ``seconds`` from start to finish (None: never ran)."""

    def reconciled(self, ok: bool, at_epoch: float) -> None:
        """A reconcile pass ended: applied or up to date (ok), or stalled on a bad commit."""

    def webhook(self, forge: str, outcome: str) -> None:
        """A forge delivery was answered: ``accepted``, ``duplicate``, ``ignored``,
        ``unauthorized``, ``too-large`` or ``bad-request``."""


class NullTelemetry:
    """Reports nothing."""

    def slot(self, schedule: str, outcome: str, reason: str | None, count: int = 1) -> None:
        return None

    def fire_lag(self, seconds: float) -> None:
        return None

    def run_finished(self, template: str, status: str, seconds: float | None) -> None:
        return None

    def reconciled(self, ok: bool, at_epoch: float) -> None:
        return None

    def webhook(self, forge: str, outcome: str) -> None:
        return None
