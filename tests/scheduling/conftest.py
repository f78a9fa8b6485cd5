"""Shared helpers for the time-engine tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconciler.model.schedule import When
from reconciler.scheduling import Trigger, build_trigger


def when(**fields: Any) -> When:
    """A validated ``when`` from YAML-style fields (camelCase, strings)."""
    return When.model_validate(fields)


def trigger(tz: str = "UTC", **fields: Any) -> Trigger:
    return build_trigger(when(**fields), tz)


def iso(t: str) -> datetime:
    """An ISO-8601 instant; ``Z`` allowed."""
    return datetime.fromisoformat(t.replace("Z", "+00:00"))


def local_isos(tr: Trigger, after: str, count: int) -> list[str]:
    """The next ``count`` slots after ``after`` as ISO strings in the schedule's zone."""
    return [tr.local(s).isoformat() for s in tr.slots_after(iso(after), count)]
