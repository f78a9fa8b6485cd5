"""Upcoming fire times across schedules, for the calendar feed (``/api/schedules.ics``).

Reads the applied schedules of the store and computes, with the same pure functions as
``schedules`` and the firing loop, every fire time (jitter included) in a window. Called by
:mod:`reconciler.api.routes.calendar`; the rendering to RFC 5545 is :mod:`reconciler.api.ics`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.model.documents import Settings
from reconciler.planning.plan import SETTINGS_NAME
from reconciler.stores.base import StateStore


@dataclass(frozen=True)
class Fire:
    """One upcoming fire of one schedule."""

    schedule: str
    template: str
    slot: datetime
    fire_at: datetime
    """In the schedule's time zone."""
    owner: str
    labels: dict[str, str]
    description: str | None
    duration: timedelta
    """How long the calendar shows it: the template's timeout, capped at 1 h (5 min if none)."""


def _labels_match(labels: dict[str, str], wanted: dict[str, str | None]) -> bool:
    """Every wanted label is there, with the wanted value (None: any value)."""
    return all(k in labels and (v is None or labels[k] == v) for k, v in wanted.items())


def _duration(template_body: dict[str, Any] | None) -> timedelta:
    from reconciler.model.common import parse_duration

    text = ((template_body or {}).get("spec") or {}).get("timeout")
    if isinstance(text, str):
        try:
            return min(parse_duration(text), timedelta(hours=1))
        except ValueError:
            pass
    return timedelta(minutes=5)


def upcoming_fires(
    store: StateStore,
    now: datetime,
    until: datetime,
    per_schedule: int,
    labels: dict[str, str | None] | None = None,
) -> list[Fire]:
    """Fires of active schedules strictly after ``now`` and before ``until``, at most
    ``per_schedule`` for each, soonest first; only schedules whose labels hold ``labels``
    (a value of None: the label with any value)."""
    from reconciler.model.schedule import When
    from reconciler.scheduling import WhenError, build_trigger, upcoming

    settings = store.get_object("Settings", SETTINGS_NAME)
    tz = Settings.model_validate_json(settings.body).spec.timezone if settings else "UTC"
    templates: dict[str, dict[str, Any]] = {}
    for rec in store.list_objects("JobTemplate"):
        try:
            templates[rec.name] = json.loads(rec.body)
        except ValueError:
            continue
    out: list[Fire] = []
    for rec in store.list_objects("Schedule"):
        if rec.state != "active":
            continue
        try:
            doc = json.loads(rec.body)
            meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
            trigger = build_trigger(When.model_validate(spec.get("when")), tz)
        except (ValueError, TypeError, WhenError):
            continue
        own = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        if labels and not _labels_match(own, labels):
            continue
        template = str(spec.get("template", ""))
        duration = _duration(templates.get(template))
        for u in upcoming(trigger, rec.name, now, per_schedule):
            if u.fire_at >= until:
                break
            out.append(
                Fire(
                    rec.name,
                    template,
                    u.slot,
                    u.fire_at.astimezone(trigger.zone.info),
                    str(spec.get("owner", "")),
                    own,
                    meta.get("description"),
                    duration,
                )
            )
    out.sort(key=lambda f: (f.fire_at, f.schedule))
    return out
