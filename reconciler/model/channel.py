"""The Channel kind: where notifications go (a signed webhook or e-mail). Pure."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from reconciler.model.common import EnvOrFile, Strict


class Webhook(Strict):
    url: str = Field(pattern=r"^https?://")
    secret_from: EnvOrFile | None = None
    headers: dict[str, str] = Field(default_factory=dict)


class Smtp(Strict):
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    user_from: EnvOrFile | None = None
    password_from: EnvOrFile | None = None


class Email(Strict):
    to: list[str] = Field(min_length=1)
    from_: str = Field(alias="from")
    smtp: Smtp


class ChannelSpec(Strict):
    webhook: Webhook | None = None
    email: Email | None = None

    def model_post_init(self, __context: Any) -> None:
        if (self.webhook is None) == (self.email is None):
            raise ValueError("a channel has exactly one of webhook or email")
