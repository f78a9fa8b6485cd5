"""Cross-document checks and the assembly of the desired state. Pure.

Runs after every document validated on its own. Checks names (unique per kind), references
(templates, owners, channels, servers, roles, environments, users), permissions, variables,
playbook paths and ``when`` expressions, then builds the :class:`DesiredState`.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from reconciler.loading.ansible_inventory import InventoryFileError, parse_inventory
from reconciler.loading.documents import LoadedDocument
from reconciler.loading.yamlparse import too_large
from reconciler.model.common import NotifyRule, Targets
from reconciler.model.desired import DesiredState
from reconciler.model.diagnostics import Diagnostic, DiagnosticSink, Position, did_you_mean
from reconciler.model.documents import (
    Channel,
    Inventory,
    JobTemplate,
    Policy,
    Schedule,
    Settings,
)
from reconciler.model.inventory import Group, Server
from reconciler.model.snapshot import Entry, EntryType, FileTooLarge
from reconciler.model.targets import TargetIndex
from reconciler.model.variables import VariableProblem, reserved_name, resolve

Loc = Sequence[str | int]
Read = Callable[[str], bytes]


class CheckCache(Protocol):
    """Diagnostics of one schedule under one context, keyed by "digest:context"."""

    def get_many(self, keys: Iterable[str]) -> dict[str, list[Diagnostic]]: ...

    def put_many(self, items: Mapping[str, list[Diagnostic]]) -> None: ...


def time_sensitive(ld: LoadedDocument) -> bool:
    """Whether a schedule's checks depend on the clock (so their results cannot be cached)."""
    doc = ld.doc
    assert isinstance(doc, Schedule)
    w = doc.spec.when
    return (
        w.at is not None
        or w.start is not None
        or w.end is not None
        or (w.cron is not None and len(w.cron.split()) >= 7)
    )


class Locator(Protocol):
    """Finds where a field of a loaded document is written (parsing its file on demand)."""

    def pos(self, ld: LoadedDocument, loc: Loc, key: bool = False) -> Position: ...

    def quoted(self, ld: LoadedDocument, loc: Loc) -> bool: ...


@lru_cache(maxsize=1024)
def timezone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone name (the time engine's rule), or None."""
    from reconciler.scheduling.zones import UnknownTimezone, get_zone

    try:
        get_zone(name)
    except UnknownTimezone as e:
        shown = name if len(name) <= 60 else name[:60] + "..."
        return f'"{shown}" is not an IANA time zone{e.why}'
    return None


def normalize_repo_path(base_dir: str, target: str) -> str | None:
    """``target`` (relative to ``base_dir``) as a repository path, or None if it leaves it."""
    if target.startswith("/") or target.startswith("\\") or ":" in target.split("/")[0][1:2]:
        return None
    joined = posixpath.normpath(posixpath.join(base_dir, target))
    if joined == ".." or joined.startswith("../") or joined.startswith("/"):
        return None
    return joined


def link_escapes(entry: Entry) -> bool:
    """Whether a symlink entry points outside the repository."""
    target = entry.link_target or ""
    return normalize_repo_path(posixpath.dirname(entry.path), target) is None


def resolve_repo_file(entries: Mapping[str, Entry], path: str) -> tuple[str | None, str]:
    """Follow symlinks inside the repository; (final path, problem code or "").

    The problem is ``symlink-escapes``, ``symlink-loop`` (the links lead back to one already
    followed) or ``playbook-missing`` (they lead to a path that does not exist)."""
    seen: set[str] = set()
    current = path
    while True:
        # a symlinked parent directory
        parts = current.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            e = entries.get(parent)
            if e is not None and e.type is EntryType.SYMLINK:
                if link_escapes(e):
                    return None, "symlink-escapes"
                base = normalize_repo_path(posixpath.dirname(parent), e.link_target or "")
                current = posixpath.join(base or "", *parts[i:])
                break
        entry = entries.get(current)
        if entry is None:
            return None, "playbook-missing"
        if entry.type is not EntryType.SYMLINK:
            return current, ""
        if current in seen:
            return None, "symlink-loop"
        if link_escapes(entry):
            return None, "symlink-escapes"
        seen.add(current)
        nxt = normalize_repo_path(posixpath.dirname(current), entry.link_target or "")
        if nxt is None:
            return None, "symlink-escapes"
        current = nxt


class CrossChecker:
    """Checks one revision's documents against each other and builds its desired state."""

    def __init__(
        self,
        docs: Sequence[LoadedDocument],
        entries: Mapping[str, Entry],
        read: Read,
        locator: Locator,
        now: datetime,
        sink: DiagnosticSink,
        revision: str | None,
        rejected: Collection[tuple[str, str]] = (),
    ) -> None:
        self.docs, self.entries, self.read, self.locator = docs, entries, read, locator
        self.now, self.sink = now, sink
        self.state = DesiredState(revision=revision)
        #: schedules whose owner is not a Policy user or lacks run (the access-change rule)
        self.owner_problems: dict[str, str] = {}
        self._selects: dict[tuple[tuple[str, ...], ...], bool] = {}
        self._var_problems: dict[tuple[str, str], list[VariableProblem]] = {}
        # Documents that failed validation were already reported; references to them are not
        # reported again as references to something that does not exist. ("" = unnamed.)
        self.rejected: dict[str, set[str]] = {}
        for kind, name in rejected:
            self.rejected.setdefault(kind, set()).add(name)

    def _invalid(self, kind: str, name: str | None = None) -> bool:
        """Whether ``name`` (or, without a name, anything) of ``kind`` may be in a document
        that failed validation, so that a missing reference to it proves nothing."""
        names = self.rejected.get(kind)
        if not names:
            return False
        return name is None or name in names or "" in names

    # -- helpers ------------------------------------------------------------------------
    def pos(self, ld: LoadedDocument, loc: Loc = (), key: bool = False) -> Position:
        return self.locator.pos(ld, loc, key)

    def error(
        self,
        ld: LoadedDocument,
        loc: Loc,
        code: str,
        msg: str,
        hint: str | None = None,
        key: bool = False,
    ) -> None:
        self.sink.error(
            self.pos(ld, loc, key),
            code,
            f'{ld.kind} "{ld.name}": {msg}' if ld.name else f"{ld.kind}: {msg}",
            hint,
        )

    def warning(
        self, ld: LoadedDocument, loc: Loc, code: str, msg: str, hint: str | None = None
    ) -> None:
        self.sink.warning(self.pos(ld, loc), code, f'{ld.kind} "{ld.name}": {msg}', hint)

    # -- the pass -----------------------------------------------------------------------
    def run(self, cache: CheckCache | None = None) -> DesiredState:
        by_kind: dict[str, list[LoadedDocument]] = {}
        for ld in self.docs:
            by_kind.setdefault(ld.kind, []).append(ld)
        self._settings(by_kind.get("Settings", []))
        named: dict[str, dict[str, LoadedDocument]] = {}
        for kind, lds in by_kind.items():
            if kind == "Settings":
                continue
            seen: dict[str, LoadedDocument] = {}
            for ld in lds:
                first = seen.get(ld.name)
                if first is not None:
                    self.error(
                        ld,
                        ("metadata", "name"),
                        "name-duplicate",
                        f'a second {kind} named "{ld.name}" '
                        f"(the first is at {first.path}:{first.line})",
                    )
                    continue
                seen[ld.name] = ld
                self.state.sources[(kind, ld.name)] = ld
            named[kind] = seen
        self._inventories(list(named.get("Inventory", {}).values()))
        self.target_index = TargetIndex(self.state.servers)
        self._policies(list(named.get("Policy", {}).values()))
        for name, ld in named.get("Channel", {}).items():
            assert isinstance(ld.doc, Channel)
            self.state.channels[name] = ld.doc
        for name, ld in named.get("JobTemplate", {}).items():
            assert isinstance(ld.doc, JobTemplate)
            self.state.templates[name] = ld.doc
        for ld in named.get("JobTemplate", {}).values():
            self._template(ld)
        self._schedules(list(named.get("Schedule", {}).values()), cache)
        self._symlinks()
        return self.state

    def context_key(self) -> str:
        """A digest of everything a schedule's checks depend on besides the schedule itself."""
        h = hashlib.sha256()
        context = [d for d in self.docs if d.kind != "Schedule"]
        for ld in sorted(context, key=lambda d: (d.kind, d.name, d.path, d.index)):
            h.update(f"{ld.kind}\0{ld.name}\0{ld.digest}\0".encode())
        for kind, names in sorted(self.rejected.items()):
            h.update(f"rejected\0{kind}\0{sorted(names)}\0".encode())
        return h.hexdigest()[:32]

    def _schedules(self, lds: list[LoadedDocument], cache: CheckCache | None) -> None:
        """Check every schedule; results of unchanged schedules come from ``cache``.

        A schedule's diagnostics depend only on its own content and on the other kinds
        (its context), except for checks against the clock (``at``, ``start``/``end``, cron
        years), which are never cached.
        """
        for ld in lds:
            self.state.schedules.add(ld)
        if cache is None:
            for ld in lds:
                self._schedule(ld)
            return
        ctx = self.context_key()
        keys = {ld.name: f"{ld.digest}:{ctx}" for ld in lds}
        hits = cache.get_many(keys.values())
        fresh: dict[str, tuple[list[Diagnostic], bool]] = {}
        for ld in lds:
            hit = hits.get(keys[ld.name])
            if hit is not None:
                self.sink.extend(d.with_path(ld.path) for d in hit)
                self._owner_problem_of(ld, hit)
                continue
            before = len(self.sink.items)
            self._schedule(ld)
            fresh[keys[ld.name]] = (self.sink.items[before:], time_sensitive(ld))
        cache.put_many({k: d for k, (d, sensitive) in fresh.items() if not sensitive})

    def _owner_problem_of(self, ld: LoadedDocument, diagnostics: list[Diagnostic]) -> None:
        """Note the owner problem of a schedule whose diagnostics came from the cache."""
        assert isinstance(ld.doc, Schedule)
        spec = ld.doc.spec
        for d in diagnostics:
            if d.code == "ref-owner":
                self.owner_problems[ld.name] = f'its owner "{spec.owner}" is not a Policy user'
            elif d.code == "owner-permission":
                self.owner_problems[ld.name] = (
                    f'its owner "{spec.owner}" does not hold run on template "{spec.template}"'
                )

    def _settings(self, lds: list[LoadedDocument]) -> None:
        for extra in lds[1:]:
            self.error(
                extra,
                (),
                "settings-duplicate",
                f"more than one Settings document (the first is at {lds[0].path}:{lds[0].line})",
            )
        if not lds:
            return
        doc = lds[0].doc
        assert isinstance(doc, Settings)
        self.state.sources[("Settings", "settings")] = lds[0]
        self.state.settings = doc.spec
        problem = timezone_problem(doc.spec.timezone)
        if problem is not None:
            self.error(
                lds[0],
                ("spec", "timezone"),
                "timezone-unknown",
                problem,
                "use a name such as UTC, Europe/Berlin or America/New_York",
            )

    def _inventories(self, lds: list[LoadedDocument]) -> None:
        st = self.state
        server_at: dict[str, tuple[LoadedDocument, Loc]] = {}
        group_at: dict[tuple[str, str], LoadedDocument] = {}
        for ld in lds:
            assert isinstance(ld.doc, Inventory)
            spec = ld.doc.spec
            for field_, target in (("roles", st.roles), ("environments", st.environments)):
                for gname, group in getattr(spec, field_).items():
                    prev = group_at.get((field_, gname))
                    if prev is not None and target[gname] != group:
                        self.error(
                            ld,
                            ("spec", field_, gname),
                            "name-duplicate",
                            f'{field_[:-1]} "{gname}" is declared differently at '
                            f"{prev.path}:{prev.line}",
                            key=True,
                        )
                        continue
                    group_at[(field_, gname)] = ld
                    target[gname] = group
        for ld in lds:
            assert isinstance(ld.doc, Inventory)
            servers = list(enumerate(ld.doc.spec.servers))
            imported = self._import_ansible(ld)
            for i, server in servers + imported:
                loc: Loc = ("spec", "servers", i) if i >= 0 else ("spec", "ansibleInventory")
                name_loc: Loc = (*loc, "name") if i >= 0 else loc
                seen = server_at.get(server.name)
                if seen is not None:
                    first = self.pos(seen[0], seen[1])
                    self.error(
                        ld,
                        name_loc,
                        "server-duplicate",
                        f'server "{server.name}" is already defined at {first.path}:{first.line}',
                        "server names are unique across all Inventory documents",
                    )
                    continue
                server_at[server.name] = (ld, name_loc)
                st.servers[server.name] = server
                for j, role in enumerate(server.roles):
                    if role not in st.roles and not self._invalid("Inventory"):
                        self.error(
                            ld,
                            (*loc, "roles", j) if i >= 0 else loc,
                            "ref-role",
                            f'server "{server.name}" names undeclared role "{role}"',
                            did_you_mean(role, st.roles) or "declare it under spec.roles",
                        )
                for j, env in enumerate(server.environments):
                    if env not in st.environments and not self._invalid("Inventory"):
                        self.error(
                            ld,
                            (*loc, "environments", j) if i >= 0 else loc,
                            "ref-environment",
                            f'server "{server.name}" names undeclared environment "{env}"',
                            did_you_mean(env, st.environments)
                            or "declare it under spec.environments",
                        )

    def _import_ansible(self, ld: LoadedDocument) -> list[tuple[int, Server]]:
        assert isinstance(ld.doc, Inventory)
        imp = ld.doc.spec.ansible_inventory
        if imp is None:
            return []
        loc: Loc = ("spec", "ansibleInventory", "path")
        path = normalize_repo_path("", imp.path)
        if path is None:
            self.error(
                ld,
                loc,
                "path-escapes",
                f'"{imp.path}" leaves the repository',
                "paths are relative to the repository root and stay inside it",
            )
            return []
        final, problem = resolve_repo_file(self.entries, path)
        if final is None:
            code = problem if problem == "symlink-escapes" else "playbook-missing"
            self.error(
                ld,
                loc,
                code,
                f'inventory file "{imp.path}" '
                + (
                    "leads out of the repository"
                    if code == "symlink-escapes"
                    else "does not exist at this revision"
                ),
            )
            return []
        try:
            hosts = parse_inventory(final, self.read(final))
        except FileTooLarge as big:  # a working tree's file, refused unread
            return self._inventory_error(
                ld, final, InventoryFileError.of(too_large(final, big.size))
            )
        except InventoryFileError as e:
            return self._inventory_error(ld, final, e)
        st = self.state
        for mapping, target in ((imp.roles, st.roles), (imp.environments, st.environments)):
            for group, name in mapping.items():
                target.setdefault(name, Group(vars=hosts.group_vars.get(group, {})))
        members = {g: hosts.members(g) for g in (*imp.roles, *imp.environments)}
        out: list[tuple[int, Server]] = []
        for host, hv in sorted(hosts.hosts.items()):
            roles = sorted(r for g, r in imp.roles.items() if host in members[g])
            envs = sorted(e for g, e in imp.environments.items() if host in members[g])
            hv = dict(hv)
            address = hv.pop("ansible_host", None)
            try:
                server = Server(name=host, host=address, roles=roles, environments=envs, vars=hv)
            except ValueError as e:
                self.error(
                    ld,
                    loc,
                    "name-invalid",
                    f'host "{host}" of "{imp.path}" cannot be a server name: '
                    f"{str(e).splitlines()[-1]}",
                )
                continue
            out.append((-1, server))
        return out

    def _inventory_error(
        self, ld: LoadedDocument, path: str, e: InventoryFileError
    ) -> list[tuple[int, Server]]:
        self.sink.error(
            Position(path, e.line, e.column),
            e.code,
            f'Ansible inventory "{path}" (read by Inventory "{ld.name}"): {e}',
        )
        return []

    def _policies(self, lds: list[LoadedDocument]) -> None:
        st = self.state
        user_at: dict[str, tuple[LoadedDocument, Loc]] = {}
        for ld in lds:
            assert isinstance(ld.doc, Policy)
            for i, user in enumerate(ld.doc.spec.users):
                user_loc: Loc = ("spec", "users", i, "name")
                seen_user = user_at.get(user.name)
                if seen_user is not None:
                    first = self.pos(seen_user[0], seen_user[1])
                    self.error(
                        ld,
                        user_loc,
                        "user-duplicate",
                        f'user "{user.name}" is already defined at {first.path}:{first.line}',
                    )
                    continue
                user_at[user.name] = (ld, user_loc)
                st.users[user.name] = user
        groups = {g for u in st.users.values() for g in u.groups}
        if self._invalid("Policy"):
            return  # users and groups of the invalid Policy are unknown
        for ld in lds:
            assert isinstance(ld.doc, Policy)
            for i, perm in enumerate(ld.doc.spec.permissions):
                st.permissions.append(perm)
                if perm.user is not None and perm.user not in st.users:
                    self.error(
                        ld,
                        ("spec", "permissions", i, "user"),
                        "ref-user",
                        f'permission for unknown user "{perm.user}"',
                        did_you_mean(perm.user, st.users),
                    )
                if perm.group is not None and perm.group not in groups:
                    self.error(
                        ld,
                        ("spec", "permissions", i, "group"),
                        "ref-user",
                        f'permission for group "{perm.group}" that no user belongs to',
                        did_you_mean(perm.group, groups),
                    )

    def _notify(self, ld: LoadedDocument, rules: Sequence[NotifyRule]) -> None:
        for i, rule in enumerate(rules):
            if rule.channel not in self.state.channels and not self._invalid(
                "Channel", rule.channel
            ):
                self.error(
                    ld,
                    ("spec", "notify", i, "channel"),
                    "ref-channel",
                    f'unknown channel "{rule.channel}"',
                    did_you_mean(rule.channel, self.state.channels),
                )

    def _targets(self, ld: LoadedDocument, targets: Targets) -> None:
        st = self.state
        checks: tuple[tuple[str, Mapping[str, Any], str], ...] = (
            ("servers", st.servers, "ref-server"),
            ("roles", st.roles, "ref-role"),
            ("environments", st.environments, "ref-environment"),
        )
        if self._invalid("Inventory"):
            return  # servers, roles and environments of the invalid Inventory are unknown
        bad = False
        for field_, known, code in checks:
            for i, name in enumerate(getattr(targets, field_)):
                if name not in known:
                    bad = True
                    self.error(
                        ld,
                        ("spec", "targets", field_, i),
                        code,
                        f'unknown {field_[:-1] if field_ != "servers" else "server"} "{name}"',
                        did_you_mean(name, known),
                    )
        if not bad and not targets.empty and not self._selects_any(targets):
            self.warning(
                ld,
                ("spec", "targets"),
                "targets-empty",
                "the targets match no server, so runs would do nothing",
                "roles and environments together select servers in both",
            )

    def _selects_any(self, targets: Targets) -> bool:
        """Whether targets select a server; memoised, as many schedules target alike."""
        key = (tuple(targets.servers), tuple(targets.roles), tuple(targets.environments))
        found = self._selects.get(key)
        if found is None:
            found = self._selects[key] = bool(self.target_index.names(targets))
        return found

    def _variable_problems(
        self, name: str, template: JobTemplate, values: Mapping[str, Any]
    ) -> list[VariableProblem]:
        """Problems of a schedule's values; memoised per template and values."""
        try:
            key: tuple[str, str] | None = (name, json.dumps(values, sort_keys=True))
        except (TypeError, ValueError):
            key = None
        cached = self._var_problems.get(key) if key else None
        if cached is None:
            cached = resolve(template.spec, values).problems
            if key:
                self._var_problems[key] = cached
        return cached

    def _template(self, ld: LoadedDocument) -> None:
        assert isinstance(ld.doc, JobTemplate)
        spec = ld.doc.spec
        self._playbook(ld, spec.playbook)
        self._notify(ld, spec.notify)
        self._targets(ld, spec.targets)
        names = [v.name for v in spec.variables]
        for i, name in enumerate(names):
            why = reserved_name(name)
            if why is not None:
                self.error(
                    ld,
                    ("spec", "variables", i, "name"),
                    "var-reserved",
                    f'variable "{name}" cannot be a prompt: {why}',
                    "a caller (the command line, the API) may give a prompt its value, and a "
                    "caller never sets Ansible's own variables; choose another name",
                )
            if name in names[:i]:
                self.error(
                    ld,
                    ("spec", "variables", i, "name"),
                    "var-definition",
                    f'variable "{name}" is declared twice',
                )
        for i, prompt in enumerate(spec.variables):
            if prompt.default is not None:
                from reconciler.model.variables import check_value

                problem = check_value(prompt, prompt.default)
                if problem is not None:
                    self.error(
                        ld,
                        ("spec", "variables", i, "default"),
                        "var-definition",
                        f"default of {problem.message}",
                    )
        st = self.state
        groups = {g for u in st.users.values() for g in u.groups}
        approvers = [] if self._invalid("Policy") else spec.approval.approvers
        for i, who in enumerate(approvers):
            if who.startswith("group:"):
                if who[6:] not in groups:
                    self.error(
                        ld,
                        ("spec", "approval", "approvers", i),
                        "ref-user",
                        f'approver group "{who[6:]}" has no member',
                        did_you_mean(who[6:], groups),
                    )
            elif who not in st.users:
                self.error(
                    ld,
                    ("spec", "approval", "approvers", i),
                    "ref-user",
                    f'approver "{who}" is not a Policy user',
                    did_you_mean(who, st.users),
                )

    def _playbook(self, ld: LoadedDocument, playbook: str) -> None:
        loc: Loc = ("spec", "playbook")
        path = normalize_repo_path("", playbook)
        if path is None:
            self.error(
                ld,
                loc,
                "path-escapes",
                f'playbook "{playbook}" leaves the repository',
                "give a path relative to the repository root, without ../",
            )
            return
        final, problem = resolve_repo_file(self.entries, path)
        if final is not None:
            self.state.playbook_blobs[ld.name] = self.entries[final].blob_id
            self.state.playbook_paths[ld.name] = final
        if final is None:
            if problem == "symlink-escapes":
                self.error(
                    ld,
                    loc,
                    "symlink-escapes",
                    f'playbook "{playbook}" is a symlink that leads out of the repository',
                )
            else:
                candidates = [p for p in self.entries if p.endswith((".yml", ".yaml"))]
                self.error(
                    ld,
                    loc,
                    "playbook-missing",
                    f'playbook "{playbook}" does not exist at this revision',
                    did_you_mean(path, candidates),
                )

    def _schedule(self, ld: LoadedDocument) -> None:
        assert isinstance(ld.doc, Schedule)
        st = self.state
        spec = ld.doc.spec
        template = st.templates.get(spec.template)
        if template is None and not self._invalid("JobTemplate", spec.template):
            self.error(
                ld,
                ("spec", "template"),
                "ref-template",
                f'unknown template "{spec.template}"',
                did_you_mean(spec.template, st.templates),
            )
        # with an invalid Policy the owner may be one of its users: say nothing about owners
        policy_known = not self._invalid("Policy")
        if policy_known and spec.owner not in st.users:
            self.owner_problems[ld.name] = f'its owner "{spec.owner}" is not a Policy user'
            self.error(
                ld,
                ("spec", "owner"),
                "ref-owner",
                f'owner "{spec.owner}" is not a Policy user',
                did_you_mean(spec.owner, st.users),
            )
        elif policy_known and template is not None and not st.may_run(spec.owner, spec.template):
            self.owner_problems[ld.name] = (
                f'its owner "{spec.owner}" does not hold run on template "{spec.template}"'
            )
            self.error(
                ld,
                ("spec", "owner"),
                "owner-permission",
                f'owner "{spec.owner}" does not hold run on template "{spec.template}"',
                f"grant it in a Policy: permissions: [{{user: {spec.owner}, "
                f"run: [{spec.template}]}}]",
            )
        self._notify(ld, spec.notify)
        self._targets(ld, spec.targets)
        self._when(ld)
        if template is not None:
            for p in self._variable_problems(spec.template, template, spec.variables):
                loc: Loc = (
                    ("spec", "variables", p.name)
                    if p.name in spec.variables
                    else ("spec", "variables")
                    if spec.variables
                    else ("spec",)
                )
                # unknown names at their key; a missing value at the key of the mapping
                # that lacks it; a bad value at the value itself
                key = p.code == "var-unknown" or p.name not in spec.variables
                self.error(ld, loc, p.code, p.message, p.hint, key=key)

    def _when(self, ld: LoadedDocument) -> None:
        from reconciler.scheduling import check_when

        assert isinstance(ld.doc, Schedule)
        when = ld.doc.spec.when
        for problem in check_when(when, self._default_tz(), self.now):
            pos = self.pos(ld, ("spec", "when", *problem.field))
            if problem.column is not None and problem.field == ("cron",):
                quote = 1 if self.locator.quoted(ld, ("spec", "when", "cron")) else 0
                pos = Position(pos.path, pos.line, pos.column + problem.column - 1 + quote)
            msg = f'Schedule "{ld.name}": {problem.message}'
            if problem.severity == "warning":
                self.sink.warning(pos, problem.code, msg)
            else:
                self.sink.error(pos, problem.code, msg)

    def _default_tz(self) -> str:
        """Settings' time zone; an invalid one is reported once, on Settings, not per schedule."""
        tz = self.state.settings.timezone
        return tz if timezone_problem(tz) is None else "UTC"

    def _symlinks(self) -> None:
        for entry in self.entries.values():
            if entry.type is EntryType.SYMLINK and link_escapes(entry):
                self.sink.error(
                    Position(entry.path),
                    "symlink-escapes",
                    f'symlink "{entry.path}" points outside the repository ("{entry.link_target}")',
                    "no path may leave the repository; copy the file in instead",
                )
