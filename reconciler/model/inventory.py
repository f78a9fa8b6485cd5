"""The Inventory kind: servers, roles and environments. Pure."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from reconciler.model.common import DnsName, Strict


class Server(Strict):
    """One managed server; ``host`` becomes ``ansible_host``, ``vars`` are host vars."""

    name: DnsName
    host: str | None = None
    roles: list[str] = Field(default_factory=list)
    environments: list[str] = Field(default_factory=list)
    vars: dict[str, Any] = Field(default_factory=dict)


class Group(Strict):
    """A role or an environment: a description and group vars."""

    description: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)


class AnsibleInventoryImport(Strict):
    """Read servers from an Ansible inventory file (INI or YAML) kept in the repository.

    Groups named in ``roles`` become those roles and groups named in ``environments`` those
    environments (``{ansible_group: reconciler_name}``); other groups are ignored.
    """

    path: str
    roles: dict[str, str] = Field(default_factory=dict)
    environments: dict[str, str] = Field(default_factory=dict)


class InventorySpec(Strict):
    servers: list[Server] = Field(default_factory=list)
    roles: dict[str, Group] = Field(default_factory=dict)
    environments: dict[str, Group] = Field(default_factory=dict)
    ansible_inventory: AnsibleInventoryImport | None = None
