"""Saved plans (``plan --out FILE``, ``apply --plan FILE``). Pure encoding and decoding.

A plan file is JSON: the plan with every body it will write, the revision and the store
serial it was made from, and a SHA-256 checksum of its canonical content, so a file edited by
hand (or damaged) is refused instead of applied.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from reconciler.errors import PlanFileError
from reconciler.planning.diff import ABSENT, FieldChange
from reconciler.planning.plan import Change, Plan, ScheduleImpact

FORMAT = "reconciler-plan/1"


def _change(c: Change) -> dict[str, Any]:
    return {
        "action": c.action,
        "kind": c.kind,
        "name": c.name,
        "reason": c.reason,
        "diff": [f.to_json() for f in c.diff],
        "content_hash": c.content_hash,
        "body": c.body,
        "state": c.state,
        "state_reason": c.state_reason,
        "impact": c.impact.to_json() if c.impact else None,
    }


def _unchange(d: dict[str, Any]) -> Change:
    return Change(
        action=d["action"],
        kind=d["kind"],
        name=d["name"],
        reason=d["reason"],
        diff=tuple(
            FieldChange(f["path"], f.get("before", ABSENT), f.get("after", ABSENT))
            for f in d["diff"]
        ),
        content_hash=d["content_hash"],
        body=d["body"],
        state=d["state"],
        state_reason=d["state_reason"],
        impact=ScheduleImpact.from_json(d["impact"]) if d["impact"] else None,
    )


def _checksum(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def dumps(plan: Plan, source: str | None) -> str:
    content = {
        "format": FORMAT,
        "source": source,
        "revision": plan.revision,
        "base_serial": plan.base_serial,
        "applied_revision": plan.applied_revision,
        "created_at": plan.created_at.isoformat(),
        "horizon_seconds": int(plan.horizon.total_seconds()),
        "changes": [_change(c) for c in plan.changes],
    }
    return json.dumps({**content, "checksum": _checksum(content)}, indent=1) + "\n"


def loads(text: str, where: str) -> tuple[Plan, str | None]:
    """The plan in a file and the repository it was made from; raises PlanFileError."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise PlanFileError(f"{where} is not a plan file: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PlanFileError(f"{where} is not a reconciler plan file (format {FORMAT})")
    checksum = data.pop("checksum", None)
    if checksum != _checksum(data):
        raise PlanFileError(
            f"{where} was changed after it was made (its checksum does not match): "
            "make a new plan instead of editing one"
        )
    try:
        plan = Plan(
            revision=data["revision"],
            base_serial=int(data["base_serial"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            changes=tuple(_unchange(c) for c in data["changes"]),
            horizon=timedelta(seconds=int(data["horizon_seconds"])),
            applied_revision=data.get("applied_revision"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise PlanFileError(f"{where} is damaged: {e}") from None
    return plan, data.get("source")
