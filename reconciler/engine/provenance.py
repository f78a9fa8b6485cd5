"""Run provenance: where a run comes from, recorded on the run when it is created.

Who calls it: the firing loop (:mod:`reconciler.engine.firing`, once per armed schedule, never
per slot), :func:`reconciler.engine.running.prepare_run` (CLI and API runs) and
:func:`reconciler.engine.running.run_json` (``runs show``, ``GET /api/runs/{id}``). Reads the
store; writes nothing itself.

A run's provenance (:func:`provenance_json`): its ``commit``; the ``signing_key`` that signed
that commit when it was applied (``requireSignedCommits``; None when unsigned commits were
allowed); the approval ``content_hash`` of its schedule and the ``approvers`` whose latest
decision for that hash is approve (None and [] when its template needs no approval); its
``trigger`` and ``slot``; and the ``replica`` whose worker claimed it (None until one did).
The commit, trigger and slot are the run's own columns; the rest is ``rc_runs.provenance``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.stores.base import JsonValue, RunRecord, StateStore


def approvers(store: StateStore, schedule: str, content_hash: str | None) -> list[str]:
    """The users whose latest decision on ``content_hash`` of ``schedule`` is approve."""
    if content_hash is None:
        return []
    return sorted(
        {a.user for a in store.list_approvals(schedule, content_hash) if a.decision == "approve"}
    )


def stored_provenance(
    signing_key: str | None, content_hash: str | None, approved_by: list[str]
) -> dict[str, JsonValue]:
    """What ``rc_runs.provenance`` holds for a new run (the replica comes at its claim)."""
    return {"signing_key": signing_key, "content_hash": content_hash, "approvers": approved_by}


def for_request(
    store: StateStore, signing_key: str | None, schedule: str | None
) -> dict[str, JsonValue]:
    """The provenance of a run asked for now (CLI, API) of the applied revision, whose key is
    ``signing_key``; with ``schedule``, that schedule's approval."""
    content_hash = None
    if schedule is not None:
        rec = store.get_object("Schedule", schedule)
        content_hash = rec.approval_hash if rec is not None else None
    approved = approvers(store, schedule, content_hash) if schedule is not None else []
    return stored_provenance(signing_key, content_hash, approved)


def provenance_json(r: RunRecord) -> dict[str, Any]:
    """The ``provenance`` object of a run (see the module docstring)."""
    p: Mapping[str, JsonValue] = r.provenance
    approved = p.get("approvers")
    return {
        "commit": r.commit,
        "signing_key": p.get("signing_key"),
        "content_hash": p.get("content_hash"),
        "approvers": list(approved) if isinstance(approved, list) else [],
        "trigger": r.trigger,
        "slot": r.slot.isoformat() if r.slot else None,
        "replica": p.get("replica"),
    }
