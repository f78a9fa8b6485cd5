"""The desired state: the valid documents of one revision, indexed for lookups. Pure."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from reconciler.model.documents import (
    AnyDocument,
    Channel,
    JobTemplate,
    Schedule,
)
from reconciler.model.inventory import Group, Server
from reconciler.model.policy import Permission, User, matches
from reconciler.model.settings import SettingsSpec


class DocumentSource(Protocol):
    """A loaded document as the desired state keeps it (see loading.documents)."""

    kind: str
    name: str
    path: str
    line: int
    body: bytes  # canonical JSON
    digest: str  # sha256 of body

    @property
    def doc(self) -> AnyDocument: ...


T = TypeVar("T")


class DocMap(Mapping[str, T], Generic[T]):
    """name -> document model, built on first access from the loaded document."""

    def __init__(self) -> None:
        self.sources: dict[str, DocumentSource] = {}

    def add(self, src: DocumentSource) -> None:
        self.sources[src.name] = src

    def __getitem__(self, name: str) -> T:
        return self.sources[name].doc  # type: ignore[return-value]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    def __contains__(self, name: object) -> bool:
        return name in self.sources


@dataclass
class DesiredState:
    """Everything one revision asks for. Built by the loader only when it found no error."""

    revision: str | None
    settings: SettingsSpec = field(default_factory=SettingsSpec)
    templates: dict[str, JobTemplate] = field(default_factory=dict)
    schedules: DocMap[Schedule] = field(default_factory=DocMap)
    channels: dict[str, Channel] = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)
    roles: dict[str, Group] = field(default_factory=dict)
    environments: dict[str, Group] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    permissions: list[Permission] = field(default_factory=list)
    #: template name -> Git blob id of its playbook file at this revision (symlinks followed):
    #: part of the content an approval is for
    playbook_blobs: dict[str, str] = field(default_factory=dict)
    #: template name -> the repository path of its playbook file (symlinks followed)
    playbook_paths: dict[str, str] = field(default_factory=dict)
    #: every named document by (kind, name): where it is, its digest and canonical body
    sources: dict[tuple[str, str], DocumentSource] = field(default_factory=dict)

    def may_run(self, user: str, template: str) -> bool:
        u = self.users.get(user)
        return u is not None and any(
            p.applies_to(u) and matches(p.run, template) for p in self.permissions
        )
