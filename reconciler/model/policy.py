"""The Policy kind: users, groups and who may run and approve which templates. Pure."""

from __future__ import annotations

import fnmatch
from typing import Any

from pydantic import Field

from reconciler.model.common import Strict


class User(Strict):
    name: str = Field(min_length=1)
    email: str | None = None
    forge_logins: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)


class Permission(Strict):
    """Grants ``run`` and ``approve`` on the templates whose names match the globs."""

    user: str | None = None
    group: str | None = None
    run: list[str] = Field(default_factory=list)
    approve: list[str] = Field(default_factory=list)

    def model_post_init(self, __context: Any) -> None:
        if (self.user is None) == (self.group is None):
            raise ValueError("a permission names exactly one of user or group")

    def applies_to(self, user: User) -> bool:
        return self.user == user.name or (self.group is not None and self.group in user.groups)


class PolicySpec(Strict):
    users: list[User] = Field(default_factory=list)
    permissions: list[Permission] = Field(default_factory=list)


def matches(globs: list[str], template: str) -> bool:
    return any(fnmatch.fnmatchcase(template, g) for g in globs)
