"""Field-level differences between two JSON documents. Pure.

Lists of mappings that carry a ``name`` (servers, variables, users) are matched by name, so
``spec.servers[web-1].host`` changes rather than a whole list being replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Marks a side where the field does not exist.
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "(absent)"})()


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.before is not ABSENT:
            out["before"] = self.before
        if self.after is not ABSENT:
            out["after"] = self.after
        return out


def _named(items: list[Any]) -> dict[str, Any] | None:
    if not items or not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
        return None
    out = {i["name"]: i for i in items}
    return out if len(out) == len(items) else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def diff(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    """Every leaf that differs between ``before`` and ``after``, in a stable order."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[FieldChange] = []
        for key in list(before) + [k for k in after if k not in before]:
            out.extend(diff(before.get(key, ABSENT), after.get(key, ABSENT), _join(path, key)))
        return out
    if isinstance(before, list) and isinstance(after, list):
        b, a = _named(before), _named(after)
        if b is not None and a is not None:
            out = []
            for name in list(b) + [n for n in a if n not in b]:
                out.extend(diff(b.get(name, ABSENT), a.get(name, ABSENT), f"{path}[{name}]"))
            return out
    return [FieldChange(path, before, after)]
