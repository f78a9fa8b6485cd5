"""Read servers from an existing Ansible inventory file (INI or YAML). Pure.

Only what reconciler needs is read: hosts, their variables, and group membership (through
``children`` too). Group variables are kept per group; the Inventory's ``ansibleInventory``
mapping decides which groups become roles and which become environments.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass
class AnsibleHosts:
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> vars
    groups: dict[str, set[str]] = field(default_factory=dict)  # group -> direct hosts
    children: dict[str, set[str]] = field(default_factory=dict)  # group -> child groups
    group_vars: dict[str, dict[str, Any]] = field(default_factory=dict)

    def members(self, group: str, _seen: frozenset[str] = frozenset()) -> set[str]:
        """Every host in ``group`` or in any group below it."""
        if group in _seen:
            return set()
        out = set(self.groups.get(group, set()))
        for child in self.children.get(group, set()):
            out |= self.members(child, _seen | {group})
        return out


class InventoryFileError(ValueError):
    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line


def _ini_value(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, str | int | float | bool) else text


def parse_ini(text: str) -> AnsibleHosts:
    inv = AnsibleHosts()
    section, kind = "ungrouped", "hosts"
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise InventoryFileError(f"unclosed section header {line!r}", lineno)
            name = line[1:-1]
            section, _, suffix = name.partition(":")
            kind = suffix or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise InventoryFileError(f"unknown section type :{kind}", lineno)
            inv.groups.setdefault(section, set())
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:
            raise InventoryFileError(str(e), lineno) from e
        if not words:
            continue
        if kind == "children":
            inv.children.setdefault(section, set()).add(words[0])
        elif kind == "vars":
            key, eq, value = line.partition("=")
            if not eq:
                raise InventoryFileError(f"expected key=value in [{section}:vars]", lineno)
            inv.group_vars.setdefault(section, {})[key.strip()] = _ini_value(value.strip())
        else:
            host, hostvars = words[0], {}
            for w in words[1:]:
                key, eq, value = w.partition("=")
                if not eq:
                    raise InventoryFileError(f"expected key=value after host {host}", lineno)
                hostvars[key] = _ini_value(value)
            if "[" in host:
                raise InventoryFileError(f"host ranges such as {host} are not supported", lineno)
            inv.hosts.setdefault(host, {}).update(hostvars)
            inv.groups.setdefault(section, set()).add(host)
    return inv


def parse_yaml(text: str) -> AnsibleHosts:
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise InventoryFileError("a YAML inventory must be a mapping of groups")
    inv = AnsibleHosts()

    def group(name: str, body: Any) -> None:
        inv.groups.setdefault(name, set())
        if body is None:
            return
        if not isinstance(body, dict):
            raise InventoryFileError(f"group {name!r} must be a mapping")
        for host, hv in (body.get("hosts") or {}).items():
            inv.hosts.setdefault(str(host), {}).update(hv or {})
            inv.groups[name].add(str(host))
        if body.get("vars"):
            inv.group_vars.setdefault(name, {}).update(body["vars"])
        for child, cbody in (body.get("children") or {}).items():
            inv.children.setdefault(name, set()).add(str(child))
            group(str(child), cbody)

    for name, body in data.items():
        group(str(name), body)
    return inv


def parse_inventory(path: str, text: str) -> AnsibleHosts:
    """Parse an INI or YAML inventory; raises :class:`InventoryFileError`."""
    if path.endswith((".yaml", ".yml", ".json")):
        try:
            return parse_yaml(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise InventoryFileError(f"invalid YAML: {e}", mark.line + 1 if mark else 1) from e
    return parse_ini(text)
