"""Target resolution: which servers a job runs against. Pure.

The rule (SPEC section 3, ``docs/targets.md``):

- servers listed directly are always included;
- roles only: every server in any listed role;
- environments only: every server in any listed environment;
- roles and environments: servers in a listed role that are also in a listed environment;
- servers plus roles/environments: the union of the above;
- no targets at all: no server; the playbook runs against localhost only.

Each server appears once, in inventory order.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.model.common import Targets
from reconciler.model.inventory import Server


def resolve_targets(targets: Targets, servers: Mapping[str, Server]) -> list[Server]:
    """The servers ``targets`` selects from ``servers`` (name -> server), each once."""
    roles = set(targets.roles)
    envs = set(targets.environments)
    direct = set(targets.servers)
    chosen: list[Server] = []
    for name, server in servers.items():
        selected = name in direct
        if not selected and (roles or envs):
            in_role = not roles or bool(roles.intersection(server.roles))
            in_env = not envs or bool(envs.intersection(server.environments))
            selected = in_role and in_env
        if selected:
            chosen.append(server)
    return chosen
