"""Read servers from an existing Ansible inventory file (INI or YAML). Pure.

Only what reconciler needs is read: hosts, their variables, and group membership (through
``children`` too). Group variables are kept per group; the Inventory's ``ansibleInventory``
mapping decides which groups become roles and which become environments.

The file gets the limits of every other file of the repository (size, UTF-8, duplicate keys,
aliases, nesting depth; :mod:`reconciler.loading.yamlparse`), and its YAML scalars are read
with YAML 1.1 rules, as Ansible reads them (``yes`` is true). A problem is an
:class:`InventoryFileError` with a position and a diagnostic code, never another exception.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from typing import Any

from reconciler.loading.yamlparse import decode, locate, parse_ansible, without_json_form
from reconciler.model.diagnostics import Diagnostic


@dataclass
class AnsibleHosts:
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> vars
    groups: dict[str, set[str]] = field(default_factory=dict)  # group -> direct hosts
    children: dict[str, set[str]] = field(default_factory=dict)  # group -> child groups
    group_vars: dict[str, dict[str, Any]] = field(default_factory=dict)

    def members(self, group: str) -> set[str]:
        """Every host in ``group`` or in any group below it (cycles and long chains of
        ``children`` included)."""
        out: set[str] = set()
        seen: set[str] = set()
        todo = [group]
        while todo:
            g = todo.pop()
            if g in seen:
                continue
            seen.add(g)
            out |= self.groups.get(g, set())
            todo.extend(self.children.get(g, ()))
        return out


class InventoryFileError(ValueError):
    """An inventory file that cannot be read: where (1-based) and the diagnostic code."""

    def __init__(
        self, message: str, line: int = 1, column: int = 1, code: str = "field-invalid"
    ) -> None:
        super().__init__(message)
        self.line, self.column, self.code = line, column, code

    @classmethod
    def of(cls, diag: Diagnostic) -> InventoryFileError:
        return cls(diag.message, diag.line, diag.column, diag.code)


def _ini_value(text: str) -> Any:
    """A ``key=value`` value: a YAML scalar as Ansible reads it, else the text itself."""
    parsed = parse_ansible("", text.encode())
    if parsed.diagnostics or len(parsed.documents) != 1:
        return text
    value = parsed.documents[0].data
    if isinstance(value, float) and not math.isfinite(value):
        return text  # .inf, .nan: Ansible reads them as text too
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


def _mapping(value: Any, what: str) -> dict[str, Any]:
    """``value`` as a mapping with string keys (None is empty); else an error naming it."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InventoryFileError(f"{what} must be a mapping")
    return {str(k): v for k, v in value.items()}


def parse_yaml(path: str, data: bytes) -> AnsibleHosts:
    parsed = parse_ansible(path, data)
    if parsed.diagnostics:
        raise InventoryFileError.of(parsed.diagnostics[0])
    if len(parsed.documents) > 1:
        node = parsed.documents[1].node
        raise InventoryFileError(
            "a YAML inventory is one document", node.start_mark.line + 1, node.start_mark.column + 1
        )
    top = parsed.documents[0].data if parsed.documents else None
    odd = without_json_form(top)
    if odd is not None:  # NaN, .inf, !!binary: a server's variables are stored as JSON
        line, column = locate(parsed.documents[0].node, odd[0])
        raise InventoryFileError(f"{odd[1]} has no JSON form, so it cannot be stored", line, column)
    if top is not None and not isinstance(top, dict):
        raise InventoryFileError("a YAML inventory must be a mapping of groups")
    inv = AnsibleHosts()

    def group(name: str, body: Any) -> None:
        inv.groups.setdefault(name, set())
        spec = _mapping(body, f"group {name!r}")
        for host, hv in _mapping(spec.get("hosts"), f"hosts of group {name!r}").items():
            inv.hosts.setdefault(host, {}).update(_mapping(hv, f"variables of host {host!r}"))
            inv.groups[name].add(host)
        group_vars = _mapping(spec.get("vars"), f"vars of group {name!r}")
        if group_vars:
            inv.group_vars.setdefault(name, {}).update(group_vars)
        for child, cbody in _mapping(spec.get("children"), f"children of group {name!r}").items():
            inv.children.setdefault(name, set()).add(child)
            group(child, cbody)

    for name, body in _mapping(top, "the inventory").items():
        group(name, body)
    return inv


def parse_inventory(path: str, data: bytes) -> AnsibleHosts:
    """Parse an INI or YAML inventory file's bytes; raises :class:`InventoryFileError`."""
    if path.endswith((".yaml", ".yml", ".json")):
        return parse_yaml(path, data)
    text, problem = decode(path, data)
    if problem is not None or text is None:
        assert problem is not None
        raise InventoryFileError.of(problem)
    return parse_ini(text)
