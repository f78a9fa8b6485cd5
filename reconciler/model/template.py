"""The JobTemplate kind: a playbook, its variable prompts, approval and API access. Pure."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from reconciler.model.common import NotifyRule, PositiveDuration, Strict, Targets

VariableType = Literal["string", "integer", "number", "boolean", "choice", "list"]


class VariablePrompt(Strict):
    """One declared variable of a template."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: VariableType = "string"
    description: str | None = None
    required: bool = False
    default: Any = None
    choices: list[Any] | None = None
    sensitive: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> VariablePrompt:
        if self.type == "choice" and not self.choices:
            raise ValueError(f"variable {self.name!r} has type choice but no choices")
        if self.type != "choice" and self.choices is not None:
            raise ValueError(f"variable {self.name!r} has choices but type {self.type}")
        if self.sensitive and self.default is not None:
            raise ValueError(
                f"variable {self.name!r} is sensitive: it cannot have a default in Git; "
                "give the value with valueFrom in the schedule"
            )
        return self


class ApprovalRule(Strict):
    """Who must approve schedules of this template before they become active."""

    required: bool = False
    approvers: list[str] = Field(default_factory=list)
    count: int = Field(default=1, ge=1)


class JobTemplateSpec(Strict):
    type: Literal["orchestration", "configuration"] = "orchestration"
    playbook: str
    variables: list[VariablePrompt] = Field(default_factory=list)
    allow_new_variables: bool = False
    approval: ApprovalRule = Field(default_factory=ApprovalRule)
    api_keys: list[str] | None = None
    timeout: PositiveDuration = timedelta(hours=1)
    forks: int = Field(default=5, ge=1, le=256)
    enabled: bool = True
    notify: list[NotifyRule] = Field(default_factory=list)
    targets: Targets = Field(default_factory=Targets)

    def prompt(self, name: str) -> VariablePrompt | None:
        for p in self.variables:
            if p.name == name:
                return p
        return None
