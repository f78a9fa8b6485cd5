"""The desired state: the valid documents of one revision, indexed for lookups. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.model.channel import ChannelSpec
from reconciler.model.diagnostics import Position
from reconciler.model.documents import (
    AnyDocument,
    Channel,
    Inventory,
    JobTemplate,
    Policy,
    Schedule,
    Settings,
)
from reconciler.model.inventory import Group, Server
from reconciler.model.policy import Permission, User, matches
from reconciler.model.settings import SettingsSpec


@dataclass(frozen=True)
class Located:
    """A document with where it came from."""

    doc: AnyDocument
    pos: Position


@dataclass
class DesiredState:
    """Everything one revision asks for. Built by the loader only when it found no error."""

    revision: str | None
    settings: SettingsSpec = field(default_factory=SettingsSpec)
    templates: dict[str, JobTemplate] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)
    roles: dict[str, Group] = field(default_factory=dict)
    environments: dict[str, Group] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    permissions: list[Permission] = field(default_factory=list)
    inventories: dict[str, Inventory] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    settings_doc: Settings | None = None
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)

    @property
    def channel_specs(self) -> dict[str, ChannelSpec]:
        return {n: c.spec for n, c in self.channels.items()}

    def may_run(self, user: str, template: str) -> bool:
        u = self.users.get(user)
        return u is not None and any(
            p.applies_to(u) and matches(p.run, template) for p in self.permissions
        )

    def may_approve(self, user: str, template: str) -> bool:
        u = self.users.get(user)
        return u is not None and any(
            p.applies_to(u) and matches(p.approve, template) for p in self.permissions
        )

    def position(self, kind: str, name: str) -> Position:
        return self.positions.get((kind, name), Position("<unknown>"))
