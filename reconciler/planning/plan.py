"""Planning: desired state x actual state -> a plan of changes. Pure (``now`` is an argument).

One change per (kind, name) that differs: ``create``, ``update``, ``delete`` or ``blocked``
(a change that will not be applied, with the reason). For schedules a change also carries its
impact: the state it will have (``active``, ``paused``, ``awaiting-approval``), the next fire
times before and after, the slots it adds or drops within the horizon, and the servers it
adds to or removes from its target set, also when only the Inventory or the template changed.
A plan also knows the revision in force before it: applying records the new revision even
when no object changes (a commit that only edits a playbook), so runs use that commit.

Besides the documents, the state keeps one internal object, ``_Servers/all``: the resolved
servers (Inventory documents merged, Ansible inventory files imported), so that a change of
targets is seen even when no reconciler document changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from reconciler.errors import StateCorrupt
from reconciler.model.common import Targets
from reconciler.model.desired import DesiredState
from reconciler.model.documents import Inventory, JobTemplate, Schedule, Settings
from reconciler.model.inventory import Group, Server
from reconciler.model.targets import TargetIndex
from reconciler.planning.approvals import Decisions as Decisions
from reconciler.planning.approvals import approval_state
from reconciler.planning.diff import FieldChange, diff

Action = Literal["create", "update", "delete", "blocked"]
ACTIONS: tuple[Action, ...] = ("create", "update", "delete", "blocked")
SERVERS_KIND = "_Servers"
#: internal object that records where the applied repository lives (runs read it); the
#: planner leaves it alone
SOURCE_KIND, SOURCE_NAME = "_Source", "repository"
SERVERS_NAME = "all"
SETTINGS_NAME = "settings"
KIND_ORDER = ("Settings", "Inventory", "Policy", "Channel", "JobTemplate", "Schedule", SERVERS_KIND)


class StoredObjectInvalid(StateCorrupt):
    """An applied object whose body is not a valid document of its kind (edited by hand)."""

    def __init__(self, kind: str, name: str, detail: str, where: str | None = None) -> None:
        self.kind, self.name, self.detail = kind, name, detail
        state = f"the state {where}" if where else "the state"
        super().__init__(
            f'{state} is damaged: the applied {kind} "{name}" is not a valid {kind} ({detail}); '
            "restore the state from a backup, or apply again to a new one"
        )

    def at(self, where: str) -> StoredObjectInvalid:
        """The same error, naming the state it is in."""
        return StoredObjectInvalid(self.kind, self.name, self.detail, where)


_Doc = TypeVar("_Doc", bound=BaseModel)


def _problem(e: Exception) -> str:
    if isinstance(e, ValidationError) and e.errors():
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def stored_document(model: type[_Doc], kind: str, name: str, body: str) -> _Doc:
    """The body of an applied object as its model; StoredObjectInvalid when it is not one."""
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        raise StoredObjectInvalid(kind, name, _problem(e)) from None


class Stored:
    """What the planner needs of one applied object (a subset of the store's record).

    ``body`` may be given later by ``fetch`` (called once, on first use): a plan of an
    unchanged schedule never needs its body, so the caller can leave 10,000 of them unread.
    """

    __slots__ = (
        "_body",
        "_fetch",
        "approval_hash",
        "content_hash",
        "kind",
        "managed",
        "name",
        "state",
        "state_reason",
    )

    def __init__(
        self,
        kind: str,
        name: str,
        content_hash: str,
        body: str | None,
        managed: bool = True,
        state: str | None = None,
        state_reason: str | None = None,
        fetch: Callable[[str, str], str] | None = None,
        approval_hash: str | None = None,
    ) -> None:
        self.kind, self.name, self.content_hash = kind, name, content_hash
        self.managed, self.state, self.state_reason = managed, state, state_reason
        self._body, self._fetch = body, fetch
        #: schedules: the approval hash the applied state was decided for
        self.approval_hash = approval_hash

    @property
    def body(self) -> str:
        if self._body is None:
            assert self._fetch is not None, "a Stored without body needs fetch"
            self._body = self._fetch(self.kind, self.name)
        return self._body

    def __repr__(self) -> str:
        return f"Stored({self.kind!r}, {self.name!r}, {self.content_hash[:12]!r})"


@dataclass(frozen=True, slots=True)
class ScheduleImpact:
    """What a schedule change does to its fire times and targets."""

    state: str
    state_reason: str | None = None
    timezone: str | None = None
    next_before: tuple[datetime, ...] = ()
    next_after: tuple[datetime, ...] = ()
    slots_added: tuple[datetime, ...] = ()
    slots_dropped: tuple[datetime, ...] = ()
    servers: tuple[str, ...] = ()
    servers_added: tuple[str, ...] = ()
    servers_removed: tuple[str, ...] = ()
    approval_hash: str | None = None
    paths: tuple[str, ...] = ()
    """Files whose edits make up this schedule's content (its file, its template's file and the
    playbook): the commits that touched them are the change's authors."""

    def to_json(self) -> dict[str, Any]:
        def iso(ts: tuple[datetime, ...]) -> list[str]:
            return [t.isoformat() for t in ts]

        return {
            "state": self.state,
            "state_reason": self.state_reason,
            "timezone": self.timezone,
            "next_before": iso(self.next_before),
            "next_after": iso(self.next_after),
            "slots_added": iso(self.slots_added),
            "slots_dropped": iso(self.slots_dropped),
            "servers": list(self.servers),
            "servers_added": list(self.servers_added),
            "servers_removed": list(self.servers_removed),
            "approval_hash": self.approval_hash,
            "paths": list(self.paths),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ScheduleImpact:
        def dts(key: str) -> tuple[datetime, ...]:
            return tuple(datetime.fromisoformat(x) for x in d.get(key, []))

        return cls(
            state=d["state"],
            state_reason=d.get("state_reason"),
            timezone=d.get("timezone"),
            next_before=dts("next_before"),
            next_after=dts("next_after"),
            slots_added=dts("slots_added"),
            slots_dropped=dts("slots_dropped"),
            servers=tuple(d.get("servers", [])),
            servers_added=tuple(d.get("servers_added", [])),
            servers_removed=tuple(d.get("servers_removed", [])),
            approval_hash=d.get("approval_hash"),
            paths=tuple(d.get("paths", [])),
        )


@dataclass(frozen=True, slots=True)
class Change:
    """One object that the plan creates, updates, deletes, or cannot change (blocked)."""

    action: Action
    kind: str
    name: str
    reason: str
    diff: tuple[FieldChange, ...] = ()
    content_hash: str | None = None
    body: str | None = None  #: the new canonical JSON (create and update)
    state: str | None = None  #: the schedule state to write
    state_reason: str | None = None
    impact: ScheduleImpact | None = None

    @property
    def internal(self) -> bool:
        return self.kind.startswith("_")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "reason": self.reason,
            "diff": [c.to_json() for c in self.diff],
        }
        if self.impact is not None:
            out["schedule"] = self.impact.to_json()
        return out


@dataclass(frozen=True)
class Plan:
    """A plan is a value: the revision and store serial it was made from, and its changes."""

    revision: str | None
    base_serial: int
    created_at: datetime
    changes: tuple[Change, ...]
    horizon: timedelta = timedelta(days=7)
    base_revision: str | None = None  #: set for ``--base`` plans (two revisions, no state)
    applied_revision: str | None = None
    """The revision in force before the plan: the state's (``--base`` plans: the base)."""

    @property
    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(ACTIONS, 0)
        for c in self.visible:
            counts[c.action] += 1
        return counts

    @property
    def visible(self) -> list[Change]:
        """The changes a user sees.

        The internal server list is normally shown through the Inventory change and the
        schedules' servers added and removed; when no Inventory document changed (an imported
        Ansible inventory file did) it is shown itself, so that no change is ever invisible.
        """
        explained = any(c.kind == "Inventory" for c in self.changes)
        return [c for c in self.changes if not c.internal or not explained]

    @property
    def empty(self) -> bool:
        """No object changes (blocked ones do not count): what ``--detailed-exitcode`` says."""
        return not any(c.action != "blocked" for c in self.changes)

    @property
    def moves_revision(self) -> bool:
        """Applying records a new revision, also when no object changes (a commit that only
        edits a playbook must reach the runs)."""
        return self.revision != self.applied_revision

    @property
    def nothing_to_apply(self) -> bool:
        return self.empty and not self.moves_revision

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "revision": self.revision,
            "changes": [c.to_json() for c in self.visible],
            "summary": self.summary,
            "base_serial": self.base_serial,
            "applied_revision": self.applied_revision,
            "revision_moves": self.moves_revision,
            "created_at": self.created_at.isoformat(),
        }
        if self.base_revision is not None:
            out["base_revision"] = self.base_revision
        return out


# -- inputs ------------------------------------------------------------------------------------


def approval_hash(
    schedule_digest: str,
    template_digest: str,
    playbook_blob: str | None,
    servers: Sequence[str],
) -> str:
    """The content an approval is for: the schedule, its template, the playbook file's blob
    at that commit and the resolved target set (server names), exactly.

    Editing any of them needs approval again: a playbook-only edit does, and so does an
    Inventory change that changes the servers the schedule runs on (a change of a server's
    address or vars alone does not).
    """
    content = {
        "schedule": schedule_digest,
        "template": template_digest,
        "playbook": playbook_blob,
        "servers": sorted(set(servers)),
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


DecisionLookup = Callable[[str, str], Decisions]


def servers_body(desired: DesiredState) -> str:
    """The resolved inventory: servers (imports included), roles and environments with vars."""
    data = {
        "servers": {
            n: s.model_dump(mode="json", by_alias=True) for n, s in desired.servers.items()
        },
        "roles": {n: g.model_dump(mode="json", by_alias=True) for n, g in desired.roles.items()},
        "environments": {
            n: g.model_dump(mode="json", by_alias=True) for n, g in desired.environments.items()
        },
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ResolvedInventory:
    """The applied inventory as runs use it (from the internal ``_Servers/all`` object)."""

    servers: dict[str, Server]
    roles: dict[str, Group]
    environments: dict[str, Group]

    @classmethod
    def from_body(cls, body: str) -> ResolvedInventory:
        try:
            data = json.loads(body)
            return cls(
                {n: Server.model_validate(s) for n, s in data.get("servers", {}).items()},
                {n: Group.model_validate(g) for n, g in data.get("roles", {}).items()},
                {n: Group.model_validate(g) for n, g in data.get("environments", {}).items()},
            )
        except (ValueError, TypeError, AttributeError) as e:  # ValidationError is a ValueError
            raise StoredObjectInvalid(SERVERS_KIND, SERVERS_NAME, _problem(e)) from None


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class _World:
    """One side (before or after) of the plan, as models."""

    servers: dict[str, Server]
    templates: dict[str, JobTemplate]
    template_digests: dict[str, str]
    timezone: str
    playbook_blobs: dict[str, str] = field(default_factory=dict)
    index: TargetIndex = field(init=False)

    def __post_init__(self) -> None:
        self.index = TargetIndex(self.servers)

    def targets_of(self, schedule: Schedule) -> tuple[str, ...]:
        targets: Targets = schedule.spec.targets
        if targets.empty:
            template = self.templates.get(schedule.spec.template)
            if template is not None:
                targets = template.spec.targets
        if targets.empty:
            return ("localhost",)
        return tuple(self.index.names(targets))


def _world_before(stored: Mapping[tuple[str, str], Stored]) -> _World:
    servers: dict[str, Server] = {}
    record = stored.get((SERVERS_KIND, SERVERS_NAME))
    if record is not None:
        servers = ResolvedInventory.from_body(record.body).servers
    else:  # a state written before the server list was kept: merge the Inventory bodies
        for (kind, _), rec in stored.items():
            if kind == "Inventory":
                for s in stored_document(Inventory, kind, rec.name, rec.body).spec.servers:
                    servers.setdefault(s.name, s)
    templates = {
        name: stored_document(JobTemplate, kind, name, rec.body)
        for (kind, name), rec in stored.items()
        if kind == "JobTemplate"
    }
    digests = {
        name: rec.content_hash for (kind, name), rec in stored.items() if kind == "JobTemplate"
    }
    settings = stored.get(("Settings", SETTINGS_NAME))
    tz = (
        stored_document(Settings, "Settings", SETTINGS_NAME, settings.body).spec.timezone
        if settings
        else "UTC"
    )
    return _World(servers, templates, digests, tz)


def _world_after(desired: DesiredState) -> _World:
    digests = {name: desired.sources[("JobTemplate", name)].digest for name in desired.templates}
    return _World(
        dict(desired.servers),
        dict(desired.templates),
        digests,
        desired.settings.timezone,
        dict(desired.playbook_blobs),
    )


# -- the planner -------------------------------------------------------------------------------


class Planner:
    """Computes the plan; one instance per plan (it caches per-template facts)."""

    def __init__(
        self,
        desired: DesiredState,
        stored: Mapping[tuple[str, str], Stored],
        decisions: DecisionLookup,
        now: datetime,
        horizon: timedelta = timedelta(days=7),
        upcoming: int = 3,
        disabled: Mapping[str, str] | None = None,
    ) -> None:
        self.desired, self.stored, self.decisions = desired, stored, decisions
        #: schedules the access-change rule will disable at their next slot (unchanged; their
        #: owner lost run): the plan says so
        self.disabled = dict(disabled or {})
        self.now, self.horizon, self.upcoming = now, horizon, upcoming
        self.after = _world_after(desired)
        self._before: _World | None = None
        self._shared: dict[tuple[str, str], tuple[datetime, ...]] = {}

    @property
    def before(self) -> _World:
        if self._before is None:
            self._before = _world_before(self.stored)
        return self._before

    def desired_objects(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(kind, name) -> (digest, body) of everything the revision asks for."""
        out: dict[tuple[str, str], tuple[str, str]] = {}
        for (kind, name), src in self.desired.sources.items():
            out[(kind, name)] = (src.digest, src.body.decode())
        inventory = self.desired.servers or self.desired.roles or self.desired.environments
        if inventory or (SERVERS_KIND, SERVERS_NAME) in self.stored:
            body = servers_body(self.desired)
            out[(SERVERS_KIND, SERVERS_NAME)] = (_digest(body), body)
        return out

    def plan(
        self, revision: str | None, base_serial: int, applied_revision: str | None = None
    ) -> Plan:
        desired = self.desired_objects()
        changes: list[Change] = []
        servers_changed = (
            self._stored_hash(SERVERS_KIND, SERVERS_NAME)
            != desired.get((SERVERS_KIND, SERVERS_NAME), (None,))[0]
        )
        changed_templates = {
            name
            for name in set(self.after.template_digests)
            | {n for (k, n) in self.stored if k == "JobTemplate"}
            if self._stored_hash("JobTemplate", name) != self.after.template_digests.get(name)
        }
        tz_changed = self._stored_body("Settings", SETTINGS_NAME) is not None and (
            self.before.timezone != self.after.timezone
        )
        for key, (digest, body) in desired.items():
            kind, name = key
            rec = self.stored.get(key)
            if kind == "Schedule":
                change = self._schedule(
                    name, rec, digest, body, servers_changed, changed_templates, tz_changed
                )
            else:
                change = self._plain(kind, name, rec, digest, body)
            if change is not None:
                changes.append(change)
        prune = self.desired.settings.prune
        for key, rec in self.stored.items():
            kind, name = key
            if key in desired or kind == SOURCE_KIND:
                continue
            label = "Settings" if kind == "Settings" else f'{kind} "{name}"'
            if not rec.managed:
                changes.append(
                    Change(
                        "blocked",
                        kind,
                        name,
                        f"{label} is not in Git, but it was not created by "
                        "reconciler, so it is never pruned",
                    )
                )
            elif not prune and kind == "Schedule":
                changes.append(
                    Change(
                        "blocked",
                        kind,
                        name,
                        f"{label} was removed from Git, but Settings prune is "
                        "false: it stays until prune is enabled",
                    )
                )
            else:
                impact = None
                if kind == "Schedule":
                    old = stored_document(Schedule, kind, name, rec.body)
                    trig = self._upcoming(old, self.before.timezone)
                    impact = ScheduleImpact(
                        state="deleted",
                        next_before=trig,
                        servers_removed=self.before.targets_of(old),
                    )
                changes.append(
                    Change("delete", kind, name, f"{label} was removed from Git", impact=impact)
                )
        order = {k: i for i, k in enumerate(KIND_ORDER)}
        changes.sort(key=lambda c: (order.get(c.kind, 99), c.name))
        return Plan(
            revision,
            base_serial,
            self.now,
            tuple(changes),
            self.horizon,
            applied_revision=applied_revision,
        )

    def _stored_hash(self, kind: str, name: str) -> str | None:
        rec = self.stored.get((kind, name))
        return rec.content_hash if rec else None

    def _stored_body(self, kind: str, name: str) -> str | None:
        rec = self.stored.get((kind, name))
        return rec.body if rec else None

    def _plain(
        self, kind: str, name: str, rec: Stored | None, digest: str, body: str
    ) -> Change | None:
        label = "Settings" if kind == "Settings" else f'{kind} "{name}"'
        if rec is None:
            return Change(
                "create", kind, name, f"{label} is new in Git", content_hash=digest, body=body
            )
        if rec.content_hash == digest:
            return None
        fields = tuple(diff(json.loads(rec.body), json.loads(body)))
        if not fields:  # the same content, written in another order
            return None
        what = ", ".join(
            dict.fromkeys(f.path.split(".")[1] if "." in f.path else f.path for f in fields)
        )
        if kind == SERVERS_KIND:
            # servers read as "web-1.host"; roles and environments keep their section
            shown = tuple(
                FieldChange(f.path.removeprefix("servers."), f.before, f.after) for f in fields
            )
            names = ", ".join(dict.fromkeys(f.path.split(".")[0] for f in shown))
            return Change(
                "update",
                kind,
                name,
                f"the servers resolved from the Inventory changed ({names})",
                shown,
                digest,
                body,
            )
        return Change(
            "update", kind, name, f"{label} changed in Git ({what})", fields, digest, body
        )

    def _state(
        self, schedule: Schedule, digest: str, stored_state: str | None = None
    ) -> tuple[str, str | None, str | None]:
        """(state, reason, approval hash) that a schedule should have under the desired state.

        An ``at:`` that waited for approval (``stored_state``) while its time passed stays
        waiting however many approvals it has: only an approval with force runs it."""
        ahash = self.approval_hash_of(schedule, digest)
        if not schedule.spec.enabled:  # a paused schedule may be decided on all the same
            return "paused", schedule.spec.pause_note or "enabled is false in Git", ahash
        if ahash is None:
            return "active", None, None
        template = self.desired.templates[schedule.spec.template]
        state, reason = approval_state(template.spec.approval, self.decisions(schedule.name, ahash))
        if state == "active" and stored_state in ("awaiting-approval", "denied"):
            slot = self._past_at(schedule)
            if slot is not None:
                return (
                    "awaiting-approval",
                    f"{reason}, but its time ({slot.isoformat()}) passed while it waited: "
                    "approve it with --force (API: ?force=true) to run it now",
                    ahash,
                )
        return state, reason, ahash

    def _past_at(self, schedule: Schedule) -> datetime | None:
        """The slot of an ``at:`` schedule when it is not after ``now``, else None."""
        if schedule.spec.when.at is None:
            return None
        from reconciler.scheduling.zones import instant

        trigger = self._trigger(schedule, self.after.timezone)
        ts = trigger.next_seconds(-(2**40)) if trigger is not None else None
        if ts is None:
            return None
        slot: datetime = instant(ts)
        return slot if slot <= self.now else None

    def approval_hash_of(self, schedule: Schedule, digest: str) -> str | None:
        """The content hash approvals of ``schedule`` are for; None when it needs none."""
        name = schedule.spec.template
        template = self.desired.templates.get(name)
        if template is None or not template.spec.approval.required:
            return None
        return approval_hash(
            digest,
            self.after.template_digests[name],
            self.after.playbook_blobs.get(name),
            self.after.targets_of(schedule),
        )

    def content_paths(self, schedule: Schedule) -> tuple[str, ...]:
        """The files that make up a schedule's content (see :attr:`ScheduleImpact.paths`)."""
        paths: list[str] = []
        src = self.desired.sources.get(("Schedule", schedule.name))
        if src is not None:
            paths.append(src.path)
        name = schedule.spec.template
        tsrc = self.desired.sources.get(("JobTemplate", name))
        if tsrc is not None:
            paths.append(tsrc.path)
        template = self.desired.templates.get(name)
        if template is not None:
            paths.append(self.desired.playbook_paths.get(name, template.spec.playbook))
        return tuple(dict.fromkeys(paths))

    def _schedule(
        self,
        name: str,
        rec: Stored | None,
        digest: str,
        body: str,
        servers_changed: bool,
        changed_templates: set[str],
        tz_changed: bool,
    ) -> Change | None:
        label = f'Schedule "{name}"'
        new = self.desired.schedules[name] if rec is None or rec.content_hash != digest else None
        if rec is not None and new is None:
            # Fast path: the document is unchanged. Only its surroundings can matter.
            if not (
                servers_changed
                or tz_changed
                or rec.state in ("awaiting-approval", "denied")
                # its content to approve may change without the document: the playbook,
                # the resolved servers
                or rec.approval_hash is not None
                or (name in self.disabled and rec.state != "disabled")
                # parse the stored body only when some template changed at all
                or (changed_templates and self._template_name(rec) in changed_templates)
            ):
                return None
            new = self.desired.schedules[name]
        assert new is not None
        state, reason, ahash = self._state(new, digest, rec.state if rec else None)
        after_servers = self.after.targets_of(new)
        after_next = self._upcoming(new, self.after.timezone)
        if rec is None:
            impact = ScheduleImpact(
                state,
                reason,
                self._tz(new, self.after.timezone),
                next_after=after_next,
                servers=after_servers,
                servers_added=after_servers,
                approval_hash=ahash,
                paths=self.content_paths(new),
            )
            note = {
                "active": "",
                "paused": " (paused)",
                "awaiting-approval": " and will wait for approval",
                "denied": " but stays denied",
            }.get(state, "")
            return Change(
                "create",
                "Schedule",
                name,
                f"{label} is new in Git{note}",
                content_hash=digest,
                body=body,
                state=state,
                state_reason=reason,
                impact=impact,
            )
        old = stored_document(Schedule, "Schedule", name, rec.body)
        fields = tuple(diff(json.loads(rec.body), json.loads(body)))
        before_servers = self.before.targets_of(old)
        before_next = self._upcoming(old, self.before.timezone)
        added = tuple(s for s in after_servers if s not in before_servers)
        removed = tuple(s for s in before_servers if s not in after_servers)
        slots_added, slots_dropped = self._slot_delta(old, new)
        reasons: list[str] = []
        if fields:
            what = ", ".join(
                dict.fromkeys(f.path.split(".")[1] if "." in f.path else f.path for f in fields)
            )
            reasons.append(f"changed in Git ({what})")
        if added or removed:
            reasons.append("its target servers change")
        if before_next != after_next and not fields:
            reasons.append("its fire times move (the default time zone changed)")
        state_changed = state != rec.state and not (
            rec.state == "disabled" and not fields and state == "active"
        )
        if rec.state == "disabled" and not fields:
            state, reason = "disabled", rec.state_reason
        if state_changed:
            reasons.append(f"its state becomes {state}" + (f" ({reason})" if reason else ""))
        elif ahash is not None and ahash != rec.approval_hash and not fields:
            reasons.append("the content to approve changed (its playbook or target servers)")
        if name in self.disabled and state == "active":
            # the access-change rule: the firing loop disables it at its next slot, with a
            # failed run that says why (the owner lost access; the schedule itself is unchanged)
            reasons.append(
                f"it will be disabled at its next slot, with a failed run: {self.disabled[name]}"
            )
        if not reasons:
            return None
        impact = ScheduleImpact(
            state,
            reason,
            self._tz(new, self.after.timezone),
            before_next,
            after_next,
            slots_added,
            slots_dropped,
            after_servers,
            added,
            removed,
            ahash,
            self.content_paths(new),
        )
        return Change(
            "update",
            "Schedule",
            name,
            f"{label} {'; '.join(reasons)}" if fields else f"{label}: {'; '.join(reasons)}",
            fields,
            digest,
            body,
            state,
            reason,
            impact,
        )

    def _template_name(self, rec: Stored) -> str:
        try:
            return str(json.loads(rec.body)["spec"]["template"])
        except (ValueError, KeyError, TypeError):
            return ""

    @staticmethod
    def _tz(schedule: Schedule, default: str) -> str:
        return schedule.spec.when.timezone or default

    def _trigger(self, schedule: Schedule, default_tz: str) -> Any:
        from reconciler.scheduling import WhenError, build_trigger

        try:
            return build_trigger(schedule.spec.when, default_tz)
        except WhenError:
            return None

    def _upcoming(self, schedule: Schedule, default_tz: str) -> tuple[datetime, ...]:
        """The next fire times; schedules with the same ``when`` and no jitter share them."""
        from reconciler.scheduling import upcoming

        when = schedule.spec.when
        key = (repr(when), default_tz) if when.jitter is None else None
        if key is not None and key in self._shared:
            return self._shared[key]
        trigger = self._trigger(schedule, default_tz)
        if trigger is None:
            return ()
        zone = trigger.zone.info
        found = upcoming(trigger, schedule.name, self.now, self.upcoming)
        out = tuple(u.fire_at.astimezone(zone) for u in found)
        if key is not None:
            self._shared[key] = out
        return out

    def _slot_delta(
        self, old: Schedule, new: Schedule
    ) -> tuple[tuple[datetime, ...], tuple[datetime, ...]]:
        a = self._trigger(new, self.after.timezone)
        b = self._trigger(old, self.before.timezone)
        until = self.now + self.horizon
        limit = 500  # a every: 1m schedule has 10,080 slots a week; show the first ones
        after = set(islice(a.due_between(self.now, until), limit)) if a else set()
        before = set(islice(b.due_between(self.now, until), limit)) if b else set()
        added = tuple(t.astimezone(a.zone.info) for t in sorted(after - before)) if a else ()
        dropped = tuple(t.astimezone(b.zone.info) for t in sorted(before - after)) if b else ()
        return added, dropped


def make_plan(
    desired: DesiredState,
    stored: Mapping[tuple[str, str], Stored],
    decisions: DecisionLookup,
    now: datetime,
    base_serial: int,
    horizon: timedelta = timedelta(days=7),
    applied_revision: str | None = None,
    disabled: Mapping[str, str] | None = None,
) -> Plan:
    """The plan that brings ``stored`` (applied from ``applied_revision``) to ``desired``.

    ``disabled``: unchanged schedules whose owner lost access (the access-change rule): the
    plan says that each will be disabled at its next slot, and why."""
    return Planner(desired, stored, decisions, now, horizon, disabled=disabled).plan(
        desired.revision, base_serial, applied_revision
    )
