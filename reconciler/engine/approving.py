"""Approvals: one decision path for the CLI, the HTTP API and forge reviews. I/O (the store).

Who calls it: ``reconciler approvals|approve|deny|dry-run`` (:mod:`reconciler.cli.approvals`),
``POST /api/schedules/{name}/approve|deny|dry-run`` and ``GET /api/approvals``
(:mod:`reconciler.api.routes.approvals`), the forge webhooks (pull-request reviews, through
:func:`approval_hashes`, :func:`user_by_login`, :func:`users_by_email` and
:func:`record_review`), and :mod:`reconciler.engine.planning` (the planner counts decisions
through :func:`decision_lookup`; ``apply`` records the authors of a change).

The rule itself is pure and lives in :mod:`reconciler.planning.approvals`: eligible approvers
are the template's ``approval.approvers`` who hold ``approve`` on it in the Policy **in force**
(the applied one, read from the store: a pull request cannot grant itself approval rights);
the authors of the change never count; ``count`` distinct people approve one content hash
(:func:`reconciler.planning.plan.approval_hash`: the schedule, its template, the playbook's
blob and the resolved servers). Eligibility is checked twice: when a decision is recorded
(refused with a one-line reason) and whenever decisions are counted.

A decision and the state it leads to are written in one transaction
(:meth:`~reconciler.stores.base.StateStore.record_decisions`), so two approvers at once
cannot both miss the count.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from reconciler.errors import UsageError
from reconciler.model.desired import DesiredState
from reconciler.model.documents import JobTemplate, Schedule
from reconciler.model.policy import PolicySpec
from reconciler.model.template import ApprovalRule
from reconciler.planning.approvals import (
    Decisions,
    PolicyView,
    approval_state,
    counted,
    refusal,
)
from reconciler.planning.plan import DecisionLookup, Planner
from reconciler.stores.base import (
    Approval,
    ApprovalStateWrite,
    DecisionWrite,
    ObjectRecord,
    ObjectState,
    RunRecord,
    StateStore,
)

if TYPE_CHECKING:
    from reconciler.scheduling import Trigger

Verdict = Literal["approve", "deny", "withdraw"]
"""``approve`` and ``deny`` record the user's decision (the latest one wins); ``withdraw``
removes it (a dismissed review, an unapproval)."""

Via = Literal["cli", "api", "github", "gitlab", "gitea"]
VIAS: tuple[str, ...] = ("cli", "api", "github", "gitlab", "gitea")


RefusalKind = Literal["unknown-schedule", "not-eligible", "no-approval", "denied", "past-due"]
"""Why a decision was refused: no such applied schedule; the user may not decide (not an
approver, no ``approve`` in the Policy in force, an author of the change); its template needs
no approval; its content is denied by someone else; an ``at:`` past due without force."""


class ApprovalRefused(UsageError):
    """A decision that cannot be recorded; the message is one line, ``kind`` says why (the
    API answers 404 for ``unknown-schedule``, 403 for ``not-eligible``, 409 otherwise)."""

    def __init__(self, message: str, kind: RefusalKind = "not-eligible") -> None:
        super().__init__(message)
        self.kind: RefusalKind = kind


@dataclass(frozen=True)
class Review:
    """One person's decision on the content of one or more schedules."""

    user: str
    """The Policy user deciding (``--as USER``, the approve key's user, the reviewer's login
    mapped through ``forgeLogins``)."""
    verdict: Verdict
    via: str
    """``cli``, ``api``, ``github``, ``gitlab`` or ``gitea``."""
    revision: str | None = None
    """The commit reviewed (forge reviews); None for the CLI and the API."""
    reason: str | None = None
    authors: frozenset[str] = frozenset()
    """Policy users who authored the change (commit authors, the pull request's author): they
    never count, whatever the Policy grants them."""


@dataclass(frozen=True)
class ReviewResult:
    """What became of a review for one schedule."""

    schedule: str
    recorded: bool
    message: str
    """Why it was refused, or what the decision did (one line)."""
    state: str | None = None
    """The applied schedule's state afterwards (None: not applied, or applied with other
    content than the one decided on)."""


class ApprovalHashes(dict[str, str]):
    """:func:`approval_hashes`' answer: schedule -> content hash, and (``templates``) the
    template and approval rule each one is decided under, so that a review of a commit not
    applied yet is checked against that commit's template."""

    def __init__(
        self, hashes: Mapping[str, str], templates: Mapping[str, tuple[str, ApprovalRule]]
    ) -> None:
        super().__init__(hashes)
        self.templates: dict[str, tuple[str, ApprovalRule]] = dict(templates)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def approval_hashes(desired: DesiredState) -> dict[str, str]:
    """schedule -> content hash, for every schedule of ``desired`` whose template requires
    approval (an :class:`ApprovalHashes`, which :func:`record_review` also reads the
    templates from)."""
    planner = Planner(desired, {}, lambda s, h: Decisions(), _EPOCH)
    hashes: dict[str, str] = {}
    templates: dict[str, tuple[str, ApprovalRule]] = {}
    for name in desired.schedules:
        schedule = desired.schedules[name]
        digest = desired.sources[("Schedule", name)].digest
        chash = planner.approval_hash_of(schedule, digest)
        if chash is None:
            continue
        hashes[name] = chash
        tname = schedule.spec.template
        templates[name] = (tname, desired.templates[tname].spec.approval)
    return ApprovalHashes(hashes, templates)


# -- the Policy in force -------------------------------------------------------------------


def policy_in_force(store: StateStore) -> PolicyView:
    """The applied Policy documents, merged (an empty Policy when none is applied)."""
    specs: list[PolicySpec] = []
    for rec in store.list_objects("Policy"):
        try:
            specs.append(PolicySpec.model_validate(json.loads(rec.body)["spec"]))
        except (ValueError, KeyError, TypeError):
            continue
    return PolicyView.merge(specs)


def users_by_email(store: StateStore, emails: Iterable[str]) -> set[str]:
    """The Policy users (in force) whose e-mail is one of ``emails`` (without case)."""
    return policy_in_force(store).users_by_email(emails)


def user_by_login(store: StateStore, login: str) -> str | None:
    """The Policy user (in force) whose ``forgeLogins`` holds ``login`` (without case)."""
    return policy_in_force(store).user_by_login(login)


# -- recording -----------------------------------------------------------------------------


@dataclass
class _Target:
    """One schedule a review is for, with what deciding on it needs."""

    schedule: str
    content_hash: str
    template: str
    rule: ApprovalRule
    authors: frozenset[str]
    applied: ObjectRecord | None
    past_due: datetime | None = None
    """The slot of an ``at:`` whose time passed while it waited (it never ran)."""


def _applied_template(store: StateStore, name: str, cache: dict[str, JobTemplate | None]) -> Any:
    if name not in cache:
        rec = store.get_object("JobTemplate", name)
        try:
            cache[name] = JobTemplate.model_validate_json(rec.body) if rec else None
        except ValueError:
            cache[name] = None
    return cache[name]


def _schedule_of(rec: ObjectRecord) -> Schedule | None:
    try:
        return Schedule.model_validate_json(rec.body)
    except ValueError:
        return None


def _at_trigger(store: StateStore, schedule: Schedule) -> Trigger | None:
    """The trigger of an ``at:`` schedule (None for the other forms)."""
    if schedule.spec.when.at is None:
        return None
    from reconciler.model.documents import Settings
    from reconciler.planning.plan import SETTINGS_NAME
    from reconciler.scheduling import WhenError, build_trigger

    settings = store.get_object("Settings", SETTINGS_NAME)
    tz = Settings.model_validate_json(settings.body).spec.timezone if settings else "UTC"
    try:
        return build_trigger(schedule.spec.when, tz)
    except WhenError:
        return None


def past_due_slot(store: StateStore, rec: ObjectRecord, now: datetime) -> datetime | None:
    """The slot of an applied ``at:`` schedule whose time has passed without a run (so
    approving it needs force, and then it runs right away); None otherwise."""
    schedule = _schedule_of(rec)
    if schedule is None:
        return None
    trigger = _at_trigger(store, schedule)
    if trigger is None:
        return None
    from reconciler.scheduling.zones import instant

    ts = trigger.next_seconds(-(2**40))
    if ts is None:
        return None
    slot = instant(ts)
    if slot > now:
        return None
    entry = store.get_slot(rec.name, slot)
    if entry is not None and entry.run_id is not None:
        return None  # it ran: an ``at:`` never runs twice for the same time
    return slot


def record_review(
    store: StateStore,
    hashes: Mapping[str, str],
    review: Review,
    now: datetime,
    *,
    force: bool = False,
) -> list[ReviewResult]:
    """Record ``review`` for every schedule in ``hashes`` (schedule -> content hash) for which
    its user is eligible, and move the applied schedules whose applied approval hash is that
    hash: ``awaiting-approval`` -> ``active`` when ``count`` is reached, ``denied`` on a
    denial, back to ``awaiting-approval`` when a withdrawal leaves too few. One transaction.

    A schedule is decided under the template that ``hashes`` carries (an
    :class:`ApprovalHashes` from :func:`approval_hashes`), else under the applied one. The
    authors are ``review.authors`` and, for the applied content, the applied object's authors.
    ``force``: an ``at:`` whose time passed while it waited becomes active and runs right away
    (without it, it is approved but stays ``awaiting-approval``, with a reason saying so).
    """
    if review.via not in VIAS:
        raise ValueError(f"review via {review.via!r} is not one of {', '.join(VIAS)}")
    if review.verdict not in ("approve", "deny", "withdraw"):
        raise ValueError(f"review verdict {review.verdict!r} is not approve, deny or withdraw")
    policy = policy_in_force(store)
    rules = hashes.templates if isinstance(hashes, ApprovalHashes) else {}
    template_cache: dict[str, JobTemplate | None] = {}
    results: list[ReviewResult] = []
    targets: dict[tuple[str, str], _Target] = {}
    writes: list[DecisionWrite] = []
    for schedule, chash in hashes.items():
        rec = store.get_object("Schedule", schedule)
        applied_doc = _schedule_of(rec) if rec is not None else None
        known = rules.get(schedule)
        if known is None and applied_doc is not None:
            tmpl = _applied_template(store, applied_doc.spec.template, template_cache)
            if tmpl is not None:
                known = (applied_doc.spec.template, tmpl.spec.approval)
        if known is None:
            results.append(ReviewResult(schedule, False, f'no schedule "{schedule}" is applied'))
            continue
        tname, rule = known
        authors = set(review.authors)
        if rec is not None and rec.approval_hash == chash:
            authors |= policy.users_by_email(rec.authors)
        if review.verdict == "withdraw":
            why = None if rule.required else f'template "{tname}" needs no approval'
        else:
            why = refusal(policy, tname, rule, review.user, authors)
        if why is not None:
            results.append(ReviewResult(schedule, False, f'schedule "{schedule}": {why}'))
            continue
        current = rec is not None and rec.approval_hash == chash
        target = _Target(schedule, chash, tname, rule, frozenset(authors), rec if current else None)
        if current and rec is not None:
            target.past_due = past_due_slot(store, rec, now)
        targets[(schedule, chash)] = target
        writes.append(
            DecisionWrite(
                schedule,
                chash,
                review.user,
                None if review.verdict == "withdraw" else review.verdict,
                now,
                review.reason,
                review.via,
                review.revision,
            )
        )
    if not writes:
        return results
    outcome: dict[str, tuple[str, str]] = {}

    def settle(seen: Sequence[Approval]) -> list[ApprovalStateWrite]:
        grouped: dict[tuple[str, str], tuple[set[str], set[str]]] = defaultdict(
            lambda: (set(), set())
        )
        for a in seen:
            grouped[(a.schedule, a.content_hash)][0 if a.decision == "approve" else 1].add(a.user)
        out: list[ApprovalStateWrite] = []
        for key, t in targets.items():
            if t.applied is None:
                continue
            if t.applied.state not in ("awaiting-approval", "denied", "active"):
                # paused or disabled: the decision is kept, the state is Git's or the owner's
                outcome[t.schedule] = (t.applied.state or "", t.applied.state_reason or "")
                continue
            approve, deny = grouped.get(key, (set(), set()))
            c = counted(
                Decisions(frozenset(approve), frozenset(deny)),
                policy,
                t.template,
                t.rule,
                t.authors,
            )
            state, reason = approval_state(t.rule, c)
            reopen = None
            if state == "active" and t.past_due is not None:
                if force and review.verdict == "approve":
                    reopen = t.past_due
                    reason += f"; its time ({t.past_due.isoformat()}) had passed: forced to run now"
                else:
                    state = "awaiting-approval"
                    reason = (
                        f"{reason}, but its time ({t.past_due.isoformat()}) passed while it "
                        "waited: approve it with --force (API: ?force=true) to run it now"
                    )
            outcome[t.schedule] = (state, reason)
            out.append(
                ApprovalStateWrite(t.schedule, t.content_hash, _state(state), reason, reopen)
            )
        return out

    store.record_decisions(writes, settle, now)
    done = {"approve": "approved", "deny": "denied", "withdraw": "withdrew the decision on"}
    for (schedule, _), t in targets.items():
        state = outcome.get(schedule, (None, ""))[0]
        what = f'{review.user} {done[review.verdict]} schedule "{schedule}"'
        if t.applied is None:
            what += " (content not applied yet: it counts when it is)"
        elif state is not None:
            what += f": {state} ({outcome[schedule][1]})"
        results.append(ReviewResult(schedule, True, what, state))
    return results


def _state(state: str) -> ObjectState:
    assert state in ("active", "awaiting-approval", "denied"), state
    return state  # type: ignore[return-value]


def decide(
    store: StateStore,
    name: str,
    user: str,
    verdict: Verdict,
    via: str,
    now: datetime,
    *,
    force: bool = False,
    reason: str | None = None,
) -> ReviewResult:
    """``approve``/``deny`` NAME as USER (the CLI and the API): a decision on the applied
    content of a schedule, with the applied object's authors excluded. Raises
    :class:`ApprovalRefused` with one line when it cannot be recorded."""
    rec = store.get_object("Schedule", name)
    if rec is None:
        known = [r.name for r in store.list_object_heads("Schedule") if r.approval_hash]
        from reconciler.model.diagnostics import did_you_mean

        hint = did_you_mean(name, known)
        raise ApprovalRefused(
            f'no schedule "{name}" is applied' + (f"; {hint}" if hint else ""),
            "unknown-schedule",
        )
    if rec.approval_hash is None:
        raise ApprovalRefused(
            f'schedule "{name}" needs no approval (its template does not require it)',
            "no-approval",
        )
    if verdict == "approve":
        denied = _denied_by(store, rec)
        others = sorted(denied - {user})
        if others:
            raise ApprovalRefused(
                f'schedule "{name}" is denied for this content (by {", ".join(others)}): a '
                "denial blocks it until the content changes in Git",
                "denied",
            )
        due = past_due_slot(store, rec, now)
        if due is not None and not force and rec.state != "active":
            raise ApprovalRefused(
                f'schedule "{name}" was due at {due.isoformat()} and its time passed while it '
                "waited for approval: approve it with --force (API: ?force=true) to run it now",
                "past-due",
            )
    authors = frozenset(policy_in_force(store).users_by_email(rec.authors))
    review = Review(user, verdict, via, None, reason, authors)
    (result,) = record_review(store, {name: rec.approval_hash}, review, now, force=force)
    if not result.recorded:
        raise ApprovalRefused(result.message)
    return result


def _denied_by(store: StateStore, rec: ObjectRecord) -> set[str]:
    """Who denied the applied content of ``rec`` (eligible users only)."""
    assert rec.approval_hash is not None
    lookup = decision_lookup(store)
    return set(lookup(rec.name, rec.approval_hash).denied_by)


# -- counting ------------------------------------------------------------------------------


def decision_lookup(store: StateStore, desired: DesiredState | None = None) -> DecisionLookup:
    """The planner's decisions: latest per user for each (schedule, approval hash), counting
    only eligible users under the Policy in force who did not author the change (the authors
    of the applied content; ``apply`` checks the authors of new content again). A schedule is
    judged under its template in ``desired`` (the revision being planned), else the applied
    one."""
    approvals = store.list_approvals()
    if not approvals:
        return lambda s, h: Decisions()
    policy = policy_in_force(store)
    latest: dict[tuple[str, str], tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for a in approvals:  # one row per (schedule, hash, user): each is that user's latest
        latest[(a.schedule, a.content_hash)][0 if a.decision == "approve" else 1].add(a.user)
    wanted = {s for s, _ in latest}
    applied = {r.name: r for r in store.list_object_heads("Schedule") if r.name in wanted}
    template_cache: dict[str, JobTemplate | None] = {}

    def rule_of(schedule: str) -> tuple[str, ApprovalRule] | None:
        if desired is not None and schedule in desired.schedules:
            tname = desired.schedules[schedule].spec.template
            t = desired.templates.get(tname)
            return (tname, t.spec.approval) if t is not None else None
        rec = applied.get(schedule)
        full = store.get_object("Schedule", schedule) if rec is not None else None
        doc = _schedule_of(full) if full is not None else None
        if doc is None:
            return None
        tmpl = _applied_template(store, doc.spec.template, template_cache)
        return (doc.spec.template, tmpl.spec.approval) if tmpl is not None else None

    def lookup(schedule: str, chash: str) -> Decisions:
        found = latest.get((schedule, chash))
        if found is None:
            return Decisions()
        known = rule_of(schedule)
        if known is None:
            return Decisions()
        rec = applied.get(schedule)
        authors: Collection[str] = ()
        if rec is not None and rec.approval_hash == chash:
            authors = policy.users_by_email(rec.authors)
        return counted(
            Decisions(frozenset(found[0]), frozenset(found[1])), policy, known[0], known[1], authors
        )

    return lookup


def recount(
    store: StateStore,
    schedule: str,
    template: str,
    rule: ApprovalRule,
    chash: str,
    authors: Collection[str],
) -> tuple[str, str]:
    """(state, reason) of new content from its decisions, without its authors (``apply``
    calls it once it knows who authored the change)."""
    policy = policy_in_force(store)
    approve: set[str] = set()
    deny: set[str] = set()
    for a in store.list_approvals(schedule, chash):
        (approve if a.decision == "approve" else deny).add(a.user)
    c = counted(Decisions(frozenset(approve), frozenset(deny)), policy, template, rule, authors)
    return approval_state(rule, c)


# -- the queue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueEntry:
    """One applied schedule that needs approval, as ``approvals`` lists it."""

    schedule: str
    template: str
    author: str | None
    """The Policy users who authored its content (comma separated), else the commit e-mails;
    None when unknown (a directory, not a Git repository)."""
    content_hash: str
    state: str
    approved_by: tuple[str, ...]
    required: int
    denied_by: tuple[str, ...] = ()
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "template": self.template,
            "author": self.author,
            "content_hash": self.content_hash,
            "state": self.state,
            "approved_by": list(self.approved_by),
            "required": self.required,
            "denied_by": list(self.denied_by),
            "reason": self.reason,
        }


def approval_queue(store: StateStore) -> list[QueueEntry]:
    """Every applied schedule whose template requires approval, with the decisions that count
    (waiting ones first, then by name)."""
    policy = policy_in_force(store)
    lookup = decision_lookup(store)
    template_cache: dict[str, JobTemplate | None] = {}
    out: list[QueueEntry] = []
    for rec in store.list_objects("Schedule"):
        if rec.approval_hash is None:
            continue
        doc = _schedule_of(rec)
        if doc is None:
            continue
        tmpl = _applied_template(store, doc.spec.template, template_cache)
        required = tmpl.spec.approval.count if tmpl is not None else 1
        users = sorted(policy.users_by_email(rec.authors))
        author = ", ".join(users) if users else (", ".join(rec.authors) or None)
        d = lookup(rec.name, rec.approval_hash)
        out.append(
            QueueEntry(
                rec.name,
                doc.spec.template,
                author,
                rec.approval_hash,
                rec.state or "active",
                tuple(sorted(d.approvers)),
                required,
                tuple(sorted(d.denied_by)),
                rec.state_reason,
            )
        )
    order = {"awaiting-approval": 0, "denied": 1}
    out.sort(key=lambda e: (order.get(e.state, 2), e.schedule))
    return out


# -- dry-run -------------------------------------------------------------------------------


def dry_run(
    store: StateStore, name: str, trigger: str, requested_by: str | None, now: datetime
) -> RunRecord:
    """Queue a simulate run of the applied schedule ``name`` (its content as it waits, with its
    variables and targets) without approving it: the run lifecycle of ``run --simulate``."""
    from reconciler.engine.running import prepare_run

    rec = store.get_object("Schedule", name)
    if rec is None:
        raise ApprovalRefused(f'no schedule "{name}" is applied', "unknown-schedule")
    schedule = _schedule_of(rec)
    if schedule is None:
        raise ApprovalRefused(f'the applied schedule "{name}" cannot be read', "unknown-schedule")
    run, _ = prepare_run(
        store,
        schedule.spec.template,
        schedule.spec.targets,
        {},
        True,
        trigger,
        now,
        requested_by=requested_by,
        schedule=schedule,
    )
    return run
