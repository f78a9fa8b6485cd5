"""Who may approve what, and what the recorded decisions make of a schedule. Pure.

The one rule that the CLI, the API, forge reviews and the planner share (SPEC section 3):

* an *eligible* approver of a template is listed in its ``approval.approvers`` (a user, or
  ``group:NAME`` for every member of the group) **and** holds ``approve`` on the template in the
  Policy *in force* (the applied one, never the one of the commit being approved: a pull
  request cannot grant itself approval rights);
* the authors of the change never count, whatever the Policy says;
* ``count`` distinct eligible people must approve the exact content (its approval hash); one
  eligible denial denies it until the content changes; a user's latest decision wins.

Called by :mod:`reconciler.engine.approving` (recording and listing decisions) and by
:mod:`reconciler.engine.planning` (the planner's decision lookup counts only what this module
lets count).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.model.policy import Permission, PolicySpec, User, matches
from reconciler.model.template import ApprovalRule


@dataclass(frozen=True, slots=True)
class Decisions:
    """Approvals and denials recorded for one (schedule, approval hash): the users whose
    latest decision is approve, and those whose latest is deny."""

    approvers: frozenset[str] = frozenset()
    denied_by: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PolicyView:
    """Users and permissions of one state (the applied Policy documents, merged)."""

    users: Mapping[str, User] = field(default_factory=dict)
    permissions: Sequence[Permission] = ()

    @classmethod
    def merge(cls, specs: Iterable[PolicySpec]) -> PolicyView:
        """Several Policy documents as one (a user defined twice keeps the first)."""
        users: dict[str, User] = {}
        permissions: list[Permission] = []
        for spec in specs:
            for u in spec.users:
                users.setdefault(u.name, u)
            permissions.extend(spec.permissions)
        return cls(users, tuple(permissions))

    def may_approve(self, user: str, template: str) -> bool:
        u = self.users.get(user)
        return u is not None and any(
            p.applies_to(u) and matches(p.approve, template) for p in self.permissions
        )

    def users_by_email(self, emails: Iterable[str]) -> set[str]:
        """The users whose e-mail is one of ``emails`` (compared without case)."""
        wanted = {e.strip().lower() for e in emails if e and e.strip()}
        return {
            u.name for u in self.users.values() if u.email and u.email.strip().lower() in wanted
        }

    def user_by_login(self, login: str) -> str | None:
        """The user whose ``forgeLogins`` holds ``login`` (compared without case)."""
        wanted = login.strip().lower()
        if not wanted:
            return None
        for u in self.users.values():
            if any(x.strip().lower() == wanted for x in u.forge_logins):
                return u.name
        return None


def listed(rule: ApprovalRule, policy: PolicyView, user: str) -> bool:
    """Whether ``user`` is named by the template's approvers (directly or by a group)."""
    u = policy.users.get(user)
    if u is None:
        return False
    for who in rule.approvers:
        if who.startswith("group:"):
            if who[len("group:") :] in u.groups:
                return True
        elif who == user:
            return True
    return False


def refusal(
    policy: PolicyView,
    template: str,
    rule: ApprovalRule,
    user: str,
    authors: Collection[str] = (),
) -> str | None:
    """Why ``user`` may not decide on a schedule of ``template`` (None: they may).

    One line, for the CLI, the API and the record of a forge review."""
    if not rule.required:
        return f'template "{template}" needs no approval'
    if user not in policy.users:
        return f'"{user}" is not a user of the Policy in force'
    if user in authors:
        return f'"{user}" authored this change, and the author of a change never approves it'
    if not listed(rule, policy, user):
        who = ", ".join(rule.approvers) or "nobody"
        return f'"{user}" is not an approver of template "{template}" (approvers: {who})'
    if not policy.may_approve(user, template):
        return f'"{user}" does not hold approve on template "{template}" in the Policy in force'
    return None


def counted(
    decisions: Decisions,
    policy: PolicyView,
    template: str,
    rule: ApprovalRule,
    authors: Collection[str] = (),
) -> Decisions:
    """Only the decisions that count: of eligible users who did not author the change."""

    def ok(user: str) -> bool:
        return refusal(policy, template, rule, user, authors) is None

    return Decisions(
        frozenset(u for u in decisions.approvers if ok(u)),
        frozenset(u for u in decisions.denied_by if ok(u)),
    )


def approval_state(rule: ApprovalRule, decisions: Decisions) -> tuple[str, str]:
    """(state, reason) of a schedule whose content has these (counted) decisions."""
    if decisions.denied_by:
        return "denied", f"denied by {', '.join(sorted(decisions.denied_by))}"
    need = rule.count
    if len(decisions.approvers) >= need:
        return "active", f"approved by {', '.join(sorted(decisions.approvers))}"
    have = len(decisions.approvers)
    return (
        "awaiting-approval",
        f"needs {need} approval{'s' if need > 1 else ''} "
        f"({have} so far) from {', '.join(rule.approvers) or 'approvers'}",
    )
