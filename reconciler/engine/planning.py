"""Plan and apply: composes loading, the state store and the pure planner.

Called by ``reconciler plan``, ``apply`` and ``schedules`` (and later by the daemon).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.errors import SourceError
from reconciler.loading.loader import LoadResult
from reconciler.model.desired import DesiredState
from reconciler.planning.plan import (
    SOURCE_KIND,
    SOURCE_NAME,
    DecisionLookup,
    Decisions,
    Plan,
    Stored,
    make_plan,
)
from reconciler.stores.base import ObjectWrite, StateStore, open_store

DEFAULT_STATE = os.path.join(".reconciler", "state.sqlite")


def state_url(value: str | None) -> str:
    """``--state``, else ``$RECONCILER_STATE``, else ``.reconciler/state.sqlite`` here."""
    return value or os.environ.get("RECONCILER_STATE") or DEFAULT_STATE


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite state URL (as :func:`open_store` reads it), None for PostgreSQL."""
    if url.lower().startswith(("postgresql:", "postgres:")):
        return None
    if url.startswith("sqlite:"):
        url = url[len("sqlite:") :]
        if url.startswith("//"):
            url = url[2:]
    return Path(url) if url else None


def state_missing(value: str | None) -> bool:
    """True when the state is a SQLite file that does not exist yet (nothing applied).

    Read-only commands (plan, schedules) then work against an empty state instead of
    creating one."""
    path = sqlite_path(state_url(value))
    return path is not None and not path.exists()


def open_state(value: str | None) -> StateStore:
    """Open the state; runs whose process is gone are reaped on the way (see
    :func:`reconciler.engine.running.reap_runs`), so every command sees them ``abandoned``."""
    from reconciler.engine.running import reap_runs

    url = state_url(value)
    if "://" not in url and not url.startswith(("sqlite:", "postgres")):
        Path(url).parent.mkdir(parents=True, exist_ok=True)
    store = open_store(url)
    reap_runs(store, datetime.now(UTC))
    return store


def load_tracked(repo: str, rev: str | None, now: datetime) -> tuple[str, LoadResult]:
    """Load ``rev``, or the head of the tracked branch (Settings ``branch``) when not given.

    Returns a description of what was read and the load result.
    """
    from reconciler.engine.desired import load_repo, load_source

    source, result = load_repo(repo, rev, "head", now)
    if rev is not None or source.git is None or result.desired is None:
        return source.description, result
    branch = result.desired.settings.branch
    try:
        tracked = source.git.resolve(source.git.default_revision(branch))
    except SourceError:
        return source.description, result  # the branch does not exist (yet): use HEAD
    if tracked != result.revision:
        source = source.at(tracked)
        result = load_source(source, now)
    return source.description, result


def stored_objects(store: StateStore) -> dict[tuple[str, str], Stored]:
    """The applied objects; schedule bodies are read only if the planner asks for one."""
    bodies: dict[tuple[str, str], str] = {}
    asked: list[int] = [0]

    def fetch(kind: str, name: str) -> str:
        """One query per body for a few changed schedules, one query for all past that."""
        if (kind, name) not in bodies:
            asked[0] += 1
            if asked[0] <= 50:
                rec = store.get_object(kind, name)
                bodies[(kind, name)] = rec.body if rec else ""
            else:
                bodies.update(((r.kind, r.name), r.body) for r in store.list_objects(kind))
        return bodies[(kind, name)]

    out: dict[tuple[str, str], Stored] = {}
    for r in store.list_object_heads():
        lazy = r.kind == "Schedule"
        body = None if lazy else ""
        out[(r.kind, r.name)] = Stored(
            r.kind,
            r.name,
            r.content_hash,
            body,
            r.managed,
            r.state,
            r.state_reason,
            fetch if lazy else None,
        )
    others = [k for k in {k for k, _ in out} if k != "Schedule"]
    for kind in others:
        for r in store.list_objects(kind):
            out[(r.kind, r.name)] = Stored(
                r.kind, r.name, r.content_hash, r.body, r.managed, r.state, r.state_reason
            )
    return out


def decision_lookup(store: StateStore) -> DecisionLookup:
    """Latest decision per user for each (schedule, approval hash)."""
    latest: dict[tuple[str, str, str], str] = {}
    for a in sorted(store.list_approvals(), key=lambda a: a.at):
        latest[(a.schedule, a.content_hash, a.user)] = a.decision
    grouped: dict[tuple[str, str], tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for (schedule, chash, user), decision in latest.items():
        grouped[(schedule, chash)][0 if decision == "approve" else 1].add(user)

    def lookup(schedule: str, chash: str) -> Decisions:
        approve, deny = grouped.get((schedule, chash), (set(), set()))
        return Decisions(frozenset(approve), frozenset(deny))

    return lookup


def plan_against_state(
    desired: DesiredState, store: StateStore, now: datetime, horizon: timedelta
) -> Plan:
    serial = store.serial()
    return make_plan(desired, stored_objects(store), decision_lookup(store), now, serial, horizon)


def plan_against_empty(desired: DesiredState, now: datetime, horizon: timedelta) -> Plan:
    """The plan against a state that does not exist yet (serial 0, nothing applied)."""
    return make_plan(desired, {}, lambda s, h: Decisions(), now, 0, horizon)


def plan_between(
    base: DesiredState, desired: DesiredState, now: datetime, horizon: timedelta
) -> Plan:
    """The plan from one revision to another, as if ``base`` had been applied (for PRs)."""
    from reconciler.planning.plan import Planner

    empty: dict[tuple[str, str], Stored] = {}
    as_applied = Planner(base, empty, lambda s, h: Decisions(), now, horizon).plan(base.revision, 0)
    stored = {
        (c.kind, c.name): Stored(
            c.kind, c.name, c.content_hash or "", c.body or "", True, c.state, c.state_reason
        )
        for c in as_applied.changes
        if c.action == "create"
    }
    plan = make_plan(desired, stored, lambda s, h: Decisions(), now, 0, horizon)
    return Plan(plan.revision, 0, plan.created_at, plan.changes, plan.horizon, base.revision)


def source_location(repo: str) -> str:
    """Where runs find the repository again: an absolute path, or the URL without credentials."""
    from reconciler.sources.git import is_url, redact

    return redact(repo) if is_url(repo) else os.path.realpath(repo)


def applied_source(store: StateStore) -> str | None:
    rec = store.get_object(SOURCE_KIND, SOURCE_NAME)
    return str(json.loads(rec.body)["location"]) if rec else None


def apply_plan(store: StateStore, plan: Plan, now: datetime, source: str | None = None) -> int:
    """Write a plan in one transaction; raises StateConflict if the serial moved.

    ``source`` (the REPO it was made from) is recorded so that runs can read the applied
    revision's playbooks later.
    """
    upserts = [
        ObjectWrite(
            c.kind,
            c.name,
            c.content_hash or "",
            c.body or "",
            True,
            c.state if c.kind == "Schedule" else None,  # type: ignore[arg-type]
            c.state_reason if c.kind == "Schedule" else None,
        )
        for c in plan.changes
        if c.action in ("create", "update")
    ]
    deletes = [(c.kind, c.name) for c in plan.changes if c.action == "delete"]
    if source is not None:
        body = json.dumps({"location": source_location(source)}, sort_keys=True)
        digest = hashlib.sha256(body.encode()).hexdigest()
        current = store.get_object(SOURCE_KIND, SOURCE_NAME)
        if current is None or current.content_hash != digest:
            upserts.append(ObjectWrite(SOURCE_KIND, SOURCE_NAME, digest, body, True))
    summary = plan.summary
    message = (
        f"{summary['create']} created, {summary['update']} updated, {summary['delete']} deleted"
    )
    return store.apply_changes(plan.base_serial, plan.revision, upserts, deletes, now, message)
