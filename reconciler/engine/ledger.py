"""The ``slots`` read model: ledger entries with their fire time (slot plus jitter)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconciler.stores.base import SlotEntry, StateStore


def ledger_rows(
    store: StateStore, schedule: str | None, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """The contract's slot objects, newest first."""
    from reconciler.engine.firing import read_applied
    from reconciler.scheduling.jitter import fire_at

    entries = store.list_slots(schedule, since, limit)
    armed = read_applied(store).armed if entries else {}
    out = []
    for e in entries:
        a = armed.get(e.schedule)
        at = e.slot
        if a is not None and a.trigger.jitter is not None:
            at = fire_at(e.schedule, e.slot, a.trigger.jitter, a.trigger.next_after(e.slot))
        out.append(entry_json(e, at))
    return out


def entry_json(e: SlotEntry, at: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "schedule": e.schedule,
        "slot": e.slot.isoformat(),
        "fire_at": at.isoformat(),
        "outcome": "run" if e.run_id is not None else "skipped",
        "run": e.run_id,
        "reason": e.skip_reason,
        "detail": e.detail,
    }
    if e.count > 1:
        row["until"] = e.until.isoformat() if e.until else None
        row["count"] = e.count
    return row
