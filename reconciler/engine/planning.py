"""Plan and apply: composes loading, the state store and the pure planner.

Called by ``reconciler plan``, ``apply`` and ``schedules`` (and later by the daemon).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import RevisionNotFound, StateCorrupt, StateError, StateUnavailable
from reconciler.loading.loader import LoadResult
from reconciler.model.desired import DesiredState
from reconciler.model.documents import Settings
from reconciler.model.settings import SettingsSpec
from reconciler.planning.plan import (
    SOURCE_KIND,
    SOURCE_NAME,
    DecisionLookup,
    Decisions,
    Plan,
    Stored,
    StoredObjectInvalid,
    make_plan,
)
from reconciler.stores.base import ObjectWrite, OutboxWrite, StateStore
from reconciler.stores.opening import open_store

if TYPE_CHECKING:
    from reconciler.engine.desired import OpenedSnapshot
    from reconciler.sources.git import GitSource

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


def open_state(value: str | None, *, readonly: bool = False) -> StateStore:
    """Open the state (creating its directory and file unless ``readonly``).

    ``readonly`` is for the commands that only read: they never write, and work on a state in
    a directory that cannot be written. Runs whose process is gone are reaped on the way (see
    :func:`reconciler.engine.running.reap_runs`), so every command sees them ``abandoned``; a
    reading command does that through a short writable connection when the state can be
    written, and leaves it to the next writer when it cannot."""
    from reconciler.engine.running import reap_runs

    url = state_url(value)
    try:
        store = open_store(url, readonly=readonly)
    except StateUnavailable as e:
        if url != DEFAULT_STATE:
            raise
        raise StateUnavailable(
            f"{e}; this is the default state, in the current directory: choose another "
            "place with --state or RECONCILER_STATE"
        ) from None
    if not readonly:
        reap_runs(store, datetime.now(UTC))
        return store
    try:
        writer = open_store(url)
    except StateError:
        return store
    try:
        reap_runs(writer, datetime.now(UTC))
    finally:
        writer.close()
    return store


def load_tracked(repo: str, rev: str | None, now: datetime) -> tuple[str, LoadResult]:
    """Load ``rev``, or the head of the tracked branch (Settings ``branch``) when not given.

    Returns a description of what was read and the load result.
    """
    source, result = load_tracked_source(repo, rev, now)
    return source.description, result


def load_tracked_source(
    repo: str, rev: str | None, now: datetime
) -> tuple[OpenedSnapshot, LoadResult]:
    """:func:`load_tracked`, returning the opened source (the daemon asks it more)."""
    from reconciler.engine.desired import load_repo, load_source

    source, result = load_repo(repo, rev, "head", now)
    if rev is not None or source.git is None:
        return source, result
    # HEAD is only where the branch's name is read: a missing branch is an error, never HEAD
    try:
        tracked = source.git.resolve(source.git.default_revision(tracked_branch(result)))
    except RevisionNotFound as e:
        raise RevisionNotFound(
            f"{e}, and it is the tracked branch (Settings branch, main unless set): create "
            "it, name the branch to track in Settings branch, or give a revision with --rev"
        ) from None
    if tracked != result.revision:
        source = source.at(tracked)
        result = load_source(source, now)
    return source, result


def tracked_branch(result: LoadResult) -> str:
    """The branch that Settings name (``main`` by default), also in a revision with errors."""
    if result.desired is not None:
        return result.desired.settings.branch
    for ld in result.documents:
        if ld.kind == "Settings" and isinstance(ld.doc, Settings):
            return ld.doc.spec.branch
    return SettingsSpec().branch


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
            r.approval_hash,
        )
    others = [k for k in {k for k, _ in out} if k != "Schedule"]
    for kind in others:
        for r in store.list_objects(kind):
            out[(r.kind, r.name)] = Stored(
                r.kind,
                r.name,
                r.content_hash,
                r.body,
                r.managed,
                r.state,
                r.state_reason,
                approval_hash=r.approval_hash,
            )
    return out


def decision_lookup(store: StateStore, desired: DesiredState | None = None) -> DecisionLookup:
    """Latest decision per user for each (schedule, approval hash), counting only eligible
    approvers under the Policy in force who did not author the change
    (:func:`reconciler.engine.approving.decision_lookup`)."""
    from reconciler.engine.approving import decision_lookup as counting

    return counting(store, desired)


def plan_against_state(
    desired: DesiredState,
    store: StateStore,
    now: datetime,
    horizon: timedelta,
    disabled: Mapping[str, str] | None = None,
) -> Plan:
    info = store.info()
    try:
        return make_plan(
            desired,
            stored_objects(store),
            decision_lookup(store, desired),
            now,
            info.serial,
            horizon,
            info.revision,
            disabled,
        )
    except StoredObjectInvalid as e:
        raise e.at(info.location) from None


def desired_for(
    result: LoadResult, store: StateStore | None
) -> tuple[DesiredState | None, dict[str, str]]:
    """The desired state to plan, and the schedules to disable, under the contract's
    access-change rule: a commit whose only errors are owners (not a Policy user, or without
    ``run``) of schedules that are unchanged since the state in force is applied, and those
    schedules become ``disabled`` with the reason; removing a person from Policy can never be
    blocked by the schedules they own. (None, {}) when the commit cannot be applied."""
    if result.desired is not None:
        return result.desired, {}
    desired = result.access_desired
    if desired is None or store is None or not result.owner_problems:
        return None, {}
    for name in result.owner_problems:
        rec = store.get_object("Schedule", name)
        src = desired.sources.get(("Schedule", name))
        if rec is None or src is None or rec.content_hash != src.digest:
            return None, {}  # a new or changed schedule with a bad owner: CI must catch it
    return desired, dict(result.owner_problems)


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
    return Plan(
        plan.revision,
        0,
        plan.created_at,
        plan.changes,
        plan.horizon,
        base_revision=base.revision,
        applied_revision=base.revision,
    )


def source_location(repo: str) -> str:
    """Where runs find the repository again: an absolute path, or the URL without credentials."""
    from reconciler.sources.git import is_url, redact

    return redact(repo) if is_url(repo) else os.path.realpath(repo)


def applied_source(store: StateStore) -> str | None:
    rec = store.get_object(SOURCE_KIND, SOURCE_NAME)
    if rec is None:
        return None
    location = json.loads(rec.body).get("location")
    if not isinstance(location, str):
        raise StateCorrupt(
            f"the state {store.info().location} is damaged: the applied {SOURCE_KIND} "
            f'"{SOURCE_NAME}" names no repository location; apply the repository again'
        )
    return location


def apply_plan(
    store: StateStore,
    plan: Plan,
    now: datetime,
    source: str | None = None,
    signing_key: str | None = None,
    git: GitSource | None = None,
) -> int:
    """Write a plan in one transaction; raises StateConflict if the serial moved.

    ``source`` (the REPO it was made from) is recorded so that runs can read the applied
    revision's playbooks later; ``signing_key`` (the key that signed the revision, see
    :mod:`reconciler.engine.signing`) is recorded with the revision. Each schedule written
    records the approval hash it was decided for and the commit authors of its content
    (:func:`change_authors`; ``git`` is the opened repository, else ``source`` is opened when it
    is a local Git repository); a schedule found approved only by the authors of its new
    content waits for approval.
    """
    authors = change_authors(store, plan, source, git)
    settled = _without_authors(store, plan, authors)
    upserts = [
        ObjectWrite(
            c.kind,
            c.name,
            c.content_hash or "",
            c.body or "",
            True,
            settled.get(c.name, (c.state, c.state_reason))[0] if c.kind == "Schedule" else None,  # type: ignore[arg-type]
            settled.get(c.name, (c.state, c.state_reason))[1] if c.kind == "Schedule" else None,
            authors.get(c.name, ()) if c.kind == "Schedule" else (),
            c.impact.approval_hash if c.kind == "Schedule" and c.impact is not None else None,
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
    notifications = _waiting(store, plan)
    return store.apply_changes(
        plan.base_serial,
        plan.revision,
        upserts,
        deletes,
        now,
        message,
        signing_key=signing_key,
        notifications=notifications,
        counts=(summary["create"], summary["update"], summary["delete"]),  # as the message
    )


def _waiting(store: StateStore, plan: Plan) -> list[OutboxWrite]:
    """The approval (waiting) notifications of the schedules this plan leaves awaiting
    approval: written in the apply's transaction."""
    from reconciler.engine.notifying import waiting_notifications

    return waiting_notifications(store, plan)


def change_authors(
    store: StateStore, plan: Plan, source: str | None, git: GitSource | None = None
) -> dict[str, tuple[str, ...]]:
    """The commit author e-mails of each schedule the plan writes.

    Content that stays (the same approval hash, or no approval needed and the same document)
    keeps the authors it has; new content gets the authors of the commits between the applied
    revision and the plan's that touched its files (:meth:`GitSource.change_authors`). A
    directory that is not a Git repository (or a working tree) has no authors."""
    changes = [
        c
        for c in plan.changes
        if c.kind == "Schedule" and c.action in ("create", "update") and c.impact is not None
    ]
    if not changes:
        return {}
    heads = {r.name: r for r in store.list_object_heads("Schedule")}
    out: dict[str, tuple[str, ...]] = {}
    fresh: dict[str, tuple[str, ...]] = {}
    for c in changes:
        assert c.impact is not None
        rec = heads.get(c.name)
        same = rec is not None and (
            (c.impact.approval_hash is not None and rec.approval_hash == c.impact.approval_hash)
            or (c.impact.approval_hash is None and rec.content_hash == c.content_hash)
        )
        if same and rec is not None:
            out[c.name] = rec.authors
        elif c.impact.paths:
            fresh[c.name] = c.impact.paths
    if not fresh or plan.revision is None:
        return out
    from reconciler.errors import SourceError

    if git is None and source is not None:
        from reconciler.sources.git import GitSource as Opened

        try:
            git = Opened(source)
        except SourceError:
            return out
    if git is None:
        return out
    # a history that cannot be read leaves these schedules without known authors
    with contextlib.suppress(SourceError):
        out.update(git.change_authors(plan.applied_revision, plan.revision, fresh))
    return out


def settle_authors(
    store: StateStore, plan: Plan, source: str | None, git: GitSource | None = None
) -> Plan:
    """The plan as ``apply`` will write it: a schedule that the plan shows active through
    approvals given only by the authors of its new content shows awaiting approval instead
    (``plan`` and ``apply`` agree)."""
    import dataclasses

    settled = _without_authors(store, plan, change_authors(store, plan, source, git))
    if not settled:
        return plan
    changes = []
    for c in plan.changes:
        if c.kind == "Schedule" and c.name in settled:
            state, reason = settled[c.name]
            impact = c.impact
            if impact is not None:
                impact = dataclasses.replace(impact, state=state, state_reason=reason)
            c = dataclasses.replace(c, state=state, state_reason=reason, impact=impact)
        changes.append(c)
    return dataclasses.replace(plan, changes=tuple(changes))


def _without_authors(
    store: StateStore, plan: Plan, authors: Mapping[str, tuple[str, ...]]
) -> dict[str, tuple[str, str | None]]:
    """Schedules the plan activates through approvals, counted again without the authors of
    their new content (known only now): (state, reason) where that changes the outcome."""
    from reconciler.engine.approving import policy_in_force, recount
    from reconciler.model.documents import JobTemplate, Schedule

    out: dict[str, tuple[str, str | None]] = {}
    candidates = [
        c
        for c in plan.changes
        if c.kind == "Schedule"
        and c.state == "active"
        and c.impact is not None
        and c.impact.approval_hash is not None
        and authors.get(c.name)
    ]
    if not candidates:
        return out
    policy = policy_in_force(store)
    bodies = {
        c.name: c.body for c in plan.changes if c.kind == "JobTemplate" and c.body is not None
    }
    for c in candidates:
        assert c.impact is not None and c.impact.approval_hash is not None and c.body
        tname = Schedule.model_validate_json(c.body).spec.template
        body = bodies.get(tname)
        if body is None:
            rec = store.get_object("JobTemplate", tname)
            body = rec.body if rec else None
        if body is None:
            continue
        rule = JobTemplate.model_validate_json(body).spec.approval
        users = policy.users_by_email(authors[c.name])
        state, reason = recount(store, c.name, tname, rule, c.impact.approval_hash, users)
        if state != c.state:
            out[c.name] = (state, reason)
    return out
