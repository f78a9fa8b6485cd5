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


class TargetIndex:
    """Servers indexed by role and environment, so resolving many schedules stays cheap."""

    def __init__(self, servers: Mapping[str, Server]) -> None:
        self.servers = servers
        self.order = {name: i for i, name in enumerate(servers)}
        self.by_role: dict[str, set[str]] = {}
        self.by_env: dict[str, set[str]] = {}
        for name, server in servers.items():
            for role in server.roles:
                self.by_role.setdefault(role, set()).add(name)
            for env in server.environments:
                self.by_env.setdefault(env, set()).add(name)

    def names(self, targets: Targets) -> list[str]:
        """Names of the selected servers, in inventory order, each once."""
        chosen = {s for s in targets.servers if s in self.servers}
        if targets.roles or targets.environments:
            in_role: set[str] | None = None
            if targets.roles:
                in_role = set().union(*(self.by_role.get(r, set()) for r in targets.roles))
            in_env: set[str] | None = None
            if targets.environments:
                in_env = set().union(*(self.by_env.get(e, set()) for e in targets.environments))
            if in_role is not None and in_env is not None:
                chosen |= in_role & in_env
            else:
                chosen |= in_role if in_role is not None else in_env or set()
        return sorted(chosen, key=self.order.__getitem__)

    def resolve(self, targets: Targets) -> list[Server]:
        return [self.servers[n] for n in self.names(targets)]


def resolve_targets(targets: Targets, servers: Mapping[str, Server]) -> list[Server]:
    """The servers ``targets`` selects from ``servers`` (name -> server), each once."""
    return TargetIndex(servers).resolve(targets)
