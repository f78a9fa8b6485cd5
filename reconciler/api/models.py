"""The request and response bodies of the general HTTP API, as pydantic models (they are the
OpenAPI schema at ``/openapi.json``). Pure. Used by :mod:`reconciler.api.routes`.

The response models mirror the JSON objects of the CLI (``runs show``, ``schedules``,
``slots``: SPEC section 4) and allow extra keys, so a field that a later version adds to those
objects reaches API clients unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from reconciler.model.common import Targets


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable, machine-readable code such as not-found")
    message: str = Field(description="One line for a person")


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting the error answers a route may give."""
    return {s: {"model": ErrorBody} for s in statuses}


class TriggerBody(BaseModel):
    """The JSON body of ``POST /api/jobs/trigger`` (every field optional)."""

    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] = Field(
        default_factory=dict,
        description="Values for the template's prompts, in their JSON types",
    )
    targets: Targets = Field(
        default_factory=Targets,
        description="Servers, roles and environments of the applied inventory "
        "(default: the template's targets)",
    )
    simulate: bool = Field(default=False, description="Check mode: report, change nothing")
    at: AwareDatetime | None = Field(
        default=None, description="Queue a one-off not before this instant (with its offset)"
    )


class RunRef(BaseModel):
    id: int
    status: str
    url: str = Field(description="Where the run is: /api/runs/{id}")


class TriggerAnswer(BaseModel):
    run: RunRef


class HostCounts(_Open):
    status: str
    ok: int
    changed: int
    failed: int
    unreachable: int
    skipped: int
    drifted: int


class RunOut(_Open):
    """The run object of ``reconciler runs show --format json``."""

    id: int
    schedule: str | None
    template: str
    trigger: str
    slot: str | None
    status: str
    commit: str | None
    started: str | None
    finished: str | None
    created: str | None = None
    message: str | None = None
    simulate: bool = False
    variables: dict[str, Any] = Field(default_factory=dict)
    targets: dict[str, Any] = Field(default_factory=dict)
    hosts: dict[str, HostCounts] = Field(default_factory=dict)


class RunPage(BaseModel):
    runs: list[RunOut]
    next: str | None = Field(description="The next (older) page, or null on the last one")


class CancelAnswer(BaseModel):
    run: RunOut
    cancel_requested: bool = Field(
        description="True when the run was running: its worker cancels it within seconds"
    )


class LogPart(BaseModel):
    """A slice of a run's log; call again with ``next_offset`` to follow a running log."""

    offset: int = Field(description="UTF-8 byte offset of data")
    next_offset: int
    data: str
    complete: bool = Field(description="The run is final and data reaches the end of its log")
    truncated: bool = Field(description="The log reached its cap; later output was dropped")


class LastRun(_Open):
    id: int
    status: str
    slot: str | None
    finished: str | None


class ScheduleOut(_Open):
    """One schedule of ``reconciler schedules --format json``."""

    name: str
    template: str
    state: str
    reason: str | None = None
    next: list[str]
    last_run: LastRun | None
    revision: str | None = None


class SystemJobOut(_Open):
    name: str
    template: None = None
    state: str
    every_seconds: float
    last_at: str
    next: list[str]
    detail: str | None = None


class ScheduleList(_Open):
    schedules: list[ScheduleOut]
    system: list[SystemJobOut] | None = Field(
        default=None, description="The daemon's own jobs (with ?system=true)"
    )


class ScheduleDetail(ScheduleOut):
    spec: dict[str, Any] = Field(description="The applied schedule's spec")


class SlotOut(_Open):
    schedule: str
    slot: str
    fire_at: str
    outcome: str
    run: int | None
    reason: str | None
    detail: str | None
    until: str | None = None
    count: int | None = None


class SlotList(BaseModel):
    slots: list[SlotOut]
