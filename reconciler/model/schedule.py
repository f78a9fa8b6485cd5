"""The Schedule kind: when a template runs, against what, with which values. Pure.

The shape of ``when`` is checked here (exactly one form, well-formed fields); what the
expression *means* (cron parsing, fire times, DST) belongs to :mod:`reconciler.scheduling`.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from reconciler.model.bounds import year_problem
from reconciler.model.common import (
    DnsName,
    Duration,
    NotifyRule,
    PositiveDuration,
    SecretRef,
    Strict,
    Targets,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


def _time_of_day(value: Any) -> time:
    if isinstance(value, time):
        return value
    if not isinstance(value, str):
        raise ValueError(f'{value!r} is not a time of day: write it quoted, as "HH:MM"')
    m = _TIME_RE.match(value.strip())
    if not m:
        raise ValueError(f'{value!r} is not a time of day: use "HH:MM" or "HH:MM:SS", 00:00-23:59')
    return time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def _format_time(value: time) -> str:
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


TimeOfDay = Annotated[
    time,
    BeforeValidator(_time_of_day),
    PlainSerializer(_format_time, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$"}),
]


def _weekday(value: Any) -> str:
    if isinstance(value, str):
        v = value.strip().lower()
        for day in WEEKDAYS:
            if v in (day, _FULL_DAYS[day]):
                return day
    raise ValueError(f"{value!r} is not a weekday: use mon, tue, wed, thu, fri, sat or sun")


_FULL_DAYS = {
    "mon": "monday",
    "tue": "tuesday",
    "wed": "wednesday",
    "thu": "thursday",
    "fri": "friday",
    "sat": "saturday",
    "sun": "sunday",
}

Weekday = Annotated[
    str,
    BeforeValidator(_weekday),
    WithJsonSchema({"type": "string", "enum": [*WEEKDAYS, *_FULL_DAYS.values()]}),
]


def _month(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 12:
        return value
    if isinstance(value, str) and value.strip().lower()[:3] in MONTHS:
        return MONTHS.index(value.strip().lower()[:3]) + 1
    raise ValueError(f"{value!r} is not a month: use jan..dec or 1..12")


Month = Annotated[
    int,
    BeforeValidator(_month),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "enum": list(MONTHS)},
                {"type": "integer", "minimum": 1, "maximum": 12},
            ]
        }
    ),
]


def _in_range(value: datetime) -> datetime:
    problem = year_problem(value.year)
    if problem is not None:
        raise ValueError(problem)
    return value


#: An instant: naive = local to the schedule's time zone, or with an offset; in the years
#: 1970 to 9000 (see :mod:`reconciler.model.bounds`).
LocalDateTime = Annotated[
    datetime,
    AfterValidator(_in_range),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?)?(Z|[+-]\d\d:?\d\d)?$",
        }
    ),
]


def _non_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("jitter cannot be negative")
    return value


class Daily(Strict):
    at: TimeOfDay


class Weekly(Strict):
    days: list[Weekday] = Field(min_length=1)
    at: TimeOfDay


class Monthly(Strict):
    day: Annotated[int, Field(ge=1, le=31)] | Literal["last"]
    at: TimeOfDay


class Yearly(Strict):
    month: Month
    day: Annotated[int, Field(ge=1, le=31)]
    at: TimeOfDay


#: The names of the mutually exclusive forms of ``when``.
WHEN_FORMS = ("at", "every", "daily", "weekly", "monthly", "yearly", "cron")


class When(Strict):
    """When a schedule fires: exactly one form, plus time zone, window and jitter."""

    at: LocalDateTime | None = None
    every: PositiveDuration | None = None
    daily: Daily | None = None
    weekly: Weekly | None = None
    monthly: Monthly | None = None
    yearly: Yearly | None = None
    cron: str | None = None
    timezone: str | None = None
    start: LocalDateTime | None = None
    end: LocalDateTime | None = None
    jitter: Annotated[Duration, AfterValidator(_non_negative)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> When:
        given = [f for f in WHEN_FORMS if getattr(self, f) is not None]
        if len(given) != 1:
            # the error type is the diagnostic code (when-form), see loading/documents.py
            forms = ", ".join(WHEN_FORMS)
            if given:
                raise PydanticCustomError(
                    "when-form",
                    "has {given}; give exactly one of {forms}",
                    {"given": " and ".join(given), "forms": forms},
                )
            raise PydanticCustomError("when-form", "needs exactly one of {forms}", {"forms": forms})
        return self

    @property
    def form(self) -> str:
        return next(f for f in WHEN_FORMS if getattr(self, f) is not None)


class Misfire(Strict):
    """What to do with slots missed while the daemon was down (see docs/scheduling.md)."""

    policy: Literal["once", "skip", "all"] = "once"
    window: PositiveDuration = timedelta(days=1)


VariableValue = SecretRef | Any


def _reference_shape(value: Any) -> Any:
    """A value that is a ``{valueFrom: ...}`` must be a reference that can be resolved."""
    if isinstance(value, dict) and set(value) == {"valueFrom"}:
        try:
            SecretRef.model_validate(value)
        except ValidationError:
            raise ValueError(
                "valueFrom must be {env: NAME} or {file: PATH}, with exactly one of them"
            ) from None
    return value


class ScheduleSpec(Strict):
    template: DnsName
    owner: str
    targets: Targets = Field(default_factory=Targets)
    when: When
    variables: dict[str, Annotated[Any, AfterValidator(_reference_shape)]] = Field(
        default_factory=dict
    )
    mode: Literal["run", "simulate"] = "run"
    remediate: bool = True
    misfire: Misfire = Field(default_factory=Misfire)
    overlap: Literal["skip", "queue", "cancel", "allow"] = "skip"
    enabled: bool = True
    pause_note: str | None = None
    notify: list[NotifyRule] = Field(default_factory=list)


def secret_ref(value: Any) -> SecretRef | None:
    """The :class:`SecretRef` a variable value stands for, or None for a literal value."""
    if isinstance(value, SecretRef):
        return value
    if isinstance(value, dict) and set(value) == {"valueFrom"}:
        return SecretRef.model_validate(value)
    return None
