"""The envelope and the registry of document kinds. Pure.

A document is one YAML mapping whose ``apiVersion`` starts with ``reconciler/``. Each kind is a
model ``{apiVersion, kind, metadata, spec}``; :data:`KINDS` maps the kind name to its model and
is what the loader and the JSON Schema generator iterate over.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, model_validator

from reconciler.model.channel import ChannelSpec
from reconciler.model.common import Metadata, Strict
from reconciler.model.inventory import InventorySpec
from reconciler.model.policy import PolicySpec
from reconciler.model.schedule import ScheduleSpec
from reconciler.model.settings import SettingsSpec
from reconciler.model.template import JobTemplateSpec

SpecT = TypeVar("SpecT", bound=BaseModel)


class Document(Strict, Generic[SpecT]):
    """Fields every kind shares. ``source`` is filled by the loader, not from YAML."""

    api_version: Literal["reconciler/v1"]
    metadata: Metadata = Metadata()
    spec: SpecT

    @property
    def name(self) -> str:
        return self.metadata.name or ""


class _Named:
    @model_validator(mode="after")
    def _needs_name(self) -> Any:
        if not self.metadata.name:  # type: ignore[attr-defined]
            raise ValueError("metadata.name is required")
        return self


class Settings(Document[SettingsSpec]):
    kind: Literal["Settings"]
    spec: SettingsSpec = SettingsSpec()


class Inventory(_Named, Document[InventorySpec]):
    kind: Literal["Inventory"]


class JobTemplate(_Named, Document[JobTemplateSpec]):
    kind: Literal["JobTemplate"]


class Schedule(_Named, Document[ScheduleSpec]):
    kind: Literal["Schedule"]


class Policy(_Named, Document[PolicySpec]):
    kind: Literal["Policy"]


class Channel(_Named, Document[ChannelSpec]):
    kind: Literal["Channel"]


AnyDocument = Settings | Inventory | JobTemplate | Schedule | Policy | Channel

#: kind name -> model, in the order the docs and schemas list them.
KINDS: dict[str, type[AnyDocument]] = {
    "Settings": Settings,
    "Inventory": Inventory,
    "JobTemplate": JobTemplate,
    "Schedule": Schedule,
    "Policy": Policy,
    "Channel": Channel,
}
