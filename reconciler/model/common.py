"""Shared building blocks of the document models: the envelope, names, durations. Pure.

Every model forbids unknown fields and uses camelCase names in YAML (``allowNewVariables``)
and snake_case in Python (``allow_new_variables``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal, NewType

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from reconciler.model.bounds import MAX_DURATION_DAYS

API_VERSION = "reconciler/v1"
API_GROUP_PREFIX = "reconciler/"

TemplateName = NewType("TemplateName", str)
ScheduleName = NewType("ScheduleName", str)
ServerName = NewType("ServerName", str)
ChannelName = NewType("ChannelName", str)
UserName = NewType("UserName", str)

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 63


class Strict(BaseModel):
    """Base of every document model: camelCase aliases, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        str_strip_whitespace=False,
    )


def check_name(value: str) -> str:
    # The error type is the diagnostic code, so every DNS-label name (metadata.name, server
    # names, references) is reported as name-invalid rather than as a generic field-invalid.
    if len(value) > NAME_MAX:
        raise PydanticCustomError(
            "name-invalid",
            "{name} is longer than {max} characters",
            {"name": repr(value), "max": NAME_MAX},
        )
    if not NAME_RE.match(value):
        raise PydanticCustomError(
            "name-invalid",
            "{name} is not a DNS label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit",
            {"name": repr(value)},
        )
    return value


DnsName = Annotated[str, AfterValidator(check_name)]

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNIT_SECONDS = (86400, 3600, 60, 1)
_MAX_SECONDS = MAX_DURATION_DAYS * 86400


@lru_cache(maxsize=4096)
def parse_duration(text: str) -> timedelta:
    """Parse ``15m``, ``1h30m``, ``7d``, ``45s``; units s, m, h, d; raises ValueError.

    At most 100 years (``36500d``, :data:`~reconciler.model.bounds.MAX_DURATION`).
    """
    m = _DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not m or not text.strip() or not any(m.groups()):
        raise ValueError(
            f"{_short(repr(text))} is not a duration: use a number with a unit s, m, h or d, "
            "like 15m or 1h30m"
        )
    # more than 10 digits in one unit is over the limit in any unit; checked before int(),
    # which refuses (and timedelta overflows on) numbers long before they are that large
    groups = m.groups()
    total = _MAX_SECONDS + 1
    if all(g is None or len(g) <= 10 for g in groups):
        total = sum(int(g) * size for g, size in zip(groups, _UNIT_SECONDS, strict=True) if g)
    if total > _MAX_SECONDS:
        raise ValueError(
            f"{_short(repr(text))} is longer than 100 years ({MAX_DURATION_DAYS}d), "
            "the longest duration"
        )
    return timedelta(seconds=total)


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


def _duration_before(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"{_short(repr(value))} is not a duration: write it as a string such as 30m or 2h"
        )
    return parse_duration(value)


def format_duration(value: timedelta) -> str:
    """The compact form of a duration: ``1d2h``, ``15m``, ``0s``."""
    total = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, total = divmod(total, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


DURATION_PATTERN = r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"
Duration = Annotated[
    timedelta,
    BeforeValidator(_duration_before),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["15m", "1h30m"]}),
]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("the duration must be greater than zero")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


class Metadata(Strict):
    """The ``metadata`` block of the envelope."""

    name: DnsName | None = None
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class ValueFrom(Strict):
    """Where a secret comes from at run time: an environment variable or a file."""

    env: str | None = None
    file: str | None = None

    def model_post_init(self, __context: Any) -> None:
        if (self.env is None) == (self.file is None):
            raise ValueError("valueFrom needs exactly one of env or file")

    def describe(self) -> str:
        return f"env {self.env}" if self.env is not None else f"file {self.file}"


class SecretRef(Strict):
    """``{valueFrom: {env: NAME} | {file: PATH}}``."""

    value_from: ValueFrom


class EnvOrFile(Strict):
    """``{env: NAME} | {file: PATH}``: the shape of ``secretFrom`` and friends."""

    env: str | None = None
    file: str | None = None

    def model_post_init(self, __context: Any) -> None:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")


NotifyEvent = Literal["success", "failure", "drift", "approval", "missed", "disabled", "stalled"]


def _default_notify_events() -> list[NotifyEvent]:
    return ["failure"]


class NotifyRule(Strict):
    """One ``notify`` entry: a channel and the events it hears about (default: failure)."""

    channel: DnsName
    on: list[NotifyEvent] = Field(default_factory=_default_notify_events)


class Targets(Strict):
    """Which servers a job runs against (see ``docs/targets.md`` for the rule)."""

    servers: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    environments: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.servers or self.roles or self.environments)
