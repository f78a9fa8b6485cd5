"""The Settings kind: repository-wide options (at most one document). Pure."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reconciler.model.common import EnvOrFile, Strict


class History(Strict):
    """How much run history to keep."""

    keep_runs: int = Field(default=100, ge=1)
    keep_days: int = Field(default=90, ge=1)


class Webhooks(Strict):
    """The shared secret that forge webhooks are verified with."""

    secret_from: EnvOrFile


class SignedCommits(Strict):
    """Only commits signed by one of these keys are applied."""

    keys: list[str] = Field(min_length=1)


class SettingsSpec(Strict):
    timezone: str = "UTC"
    exclude: list[str] = Field(default_factory=list)
    sync: Literal["auto", "manual"] = "auto"
    prune: bool = True
    branch: str = "main"
    history: History = Field(default_factory=History)
    webhooks: Webhooks | None = None
    require_signed_commits: SignedCommits | None = None
