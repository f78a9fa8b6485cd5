"""The firing row of a schedule: the few fields of an applied Schedule body that firing needs.

Who calls it: the state store when it applies a Schedule (it keeps the row beside the body, so
a daemon starting on 100,000 schedules reads short columns instead of parsing every body) and
the firing loop, for a schedule applied before the store kept firing rows. Pure: a function of
the body's JSON text, no validation beyond picking the fields (the body was validated when it
was loaded; firing validates ``when`` when it builds the trigger).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

#: The spec fields a run of a schedule takes its variables, targets and mode from: schedules
#: equal in these share one validation and resolution of their run fields.
RUN_FIELD_KEYS = ("template", "variables", "targets", "mode")


@dataclass(frozen=True, slots=True)
class FiringSpec:
    """What firing needs from a Schedule body."""

    when: str
    """Canonical JSON of ``spec.when`` (sorted keys, no spaces): with the zone, the cursor's key."""
    template: str
    owner: str
    misfire: str
    """``spec.misfire.policy`` (default ``once``)."""
    window: str | None
    """``spec.misfire.window`` as written (None: the default, one day)."""
    overlap: str
    fields_key: str
    """:func:`fields_key` of the spec."""
    shape: str = ""
    """A digest of all the fields above: schedules with equal firing rows share it."""

    def __post_init__(self) -> None:
        if not self.shape:
            object.__setattr__(self, "shape", shape_of(self.fields()))

    def fields(self) -> tuple[str | None, ...]:
        """The fields but ``shape``, in the order of the constructor."""
        return (
            self.when,
            self.template,
            self.owner,
            self.misfire,
            self.window,
            self.overlap,
            self.fields_key,
        )


def shape_of(fields: tuple[str | None, ...]) -> str:
    return hashlib.sha256(canonical(fields).encode()).hexdigest()[:24]


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def fields_key(spec: dict[str, Any]) -> str:
    """What a schedule's run fields depend on, as a short digest."""
    data = canonical([spec.get(k) for k in RUN_FIELD_KEYS]).encode()
    return hashlib.sha256(data).hexdigest()[:24]


def firing_spec(body: str) -> FiringSpec:
    """The firing row of a Schedule body (canonical JSON); ValueError, KeyError or TypeError
    when the body is not a schedule's."""
    spec = json.loads(body)["spec"]
    if not isinstance(spec, dict):
        raise TypeError("the body's spec is not a mapping")
    when = spec["when"]
    if not isinstance(when, dict):
        raise TypeError("the body's spec.when is not a mapping")
    misfire = spec.get("misfire") or {}
    window = misfire.get("window")
    return FiringSpec(
        when=canonical(when),
        template=str(spec.get("template", "")),
        owner=str(spec.get("owner", "")),
        misfire=str(misfire.get("policy", "once")),
        window=None if window is None else str(window),
        overlap=str(spec.get("overlap", "skip")),
        fields_key=fields_key(spec),
    )
