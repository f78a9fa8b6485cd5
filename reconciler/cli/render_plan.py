"""Rendering a plan as text, in Terraform's style (+ create, ~ update, - delete, ! blocked).

Names, keys, values and reasons come from the repository: each goes through
:func:`~reconciler.cli.common.printable` before it joins a line.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from reconciler.cli.common import printable
from reconciler.planning.diff import ABSENT
from reconciler.planning.plan import Change, Plan

SYMBOL = {"create": "+", "update": "~", "delete": "-", "blocked": "!"}
COLOUR = {"create": "green", "update": "yellow", "delete": "red", "blocked": "magenta"}
VERB = {
    "create": "will be created",
    "update": "will be updated",
    "delete": "will be deleted",
    "blocked": "is blocked",
}
MAX_SLOTS_SHOWN = 8


def _v(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    return printable(json.dumps(value, ensure_ascii=False))


def _list(names: tuple[str, ...]) -> str:
    return ", ".join(printable(n) for n in names)


def _times(ts: tuple[datetime, ...]) -> str:
    if not ts:
        return "(never)"
    return ", ".join(t.isoformat() for t in ts)


def _capped(ts: tuple[datetime, ...]) -> str:
    shown = ", ".join(t.isoformat() for t in ts[:MAX_SLOTS_SHOWN])
    more = len(ts) - MAX_SLOTS_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def render_change(c: Change, colour: bool) -> list[str]:
    sym = SYMBOL[c.action]
    if c.kind == "Settings":
        head = f"{sym} Settings {VERB[c.action]}"
    elif c.internal:  # _Servers: the server list resolved from Inventory documents and files
        head = f"{sym} Servers (resolved from the Inventory) {VERB[c.action]}"
    else:
        head = f'{sym} {c.kind} "{printable(c.name)}" {VERB[c.action]}'

    if colour:
        head = click.style(head, fg=COLOUR[c.action], bold=True)
    lines = [head, f"    reason: {printable(c.reason)}"]
    for f in c.diff:
        key = printable(f.path)
        if f.before is ABSENT:
            lines.append(f"    + {key}: {_v(f.after)}")
        elif f.after is ABSENT:
            lines.append(f"    - {key}: {_v(f.before)}")
        else:
            lines.append(f"    ~ {key}: {_v(f.before)} -> {_v(f.after)}")
    imp = c.impact
    if imp is not None:
        if c.action != "delete":
            state = imp.state + (f" ({printable(imp.state_reason)})" if imp.state_reason else "")
            lines.append(f"    state: {state}")
        if c.action == "create":
            when = "next fire times" if imp.state == "active" else "fire times once active"
            lines.append(f"    {when} ({printable(str(imp.timezone))}): {_times(imp.next_after)}")
            lines.append(f"    servers: {_list(imp.servers) or '(none)'}")
        elif c.action == "delete":
            lines.append(f"    fire times dropped: {_times(imp.next_before)}")
            if imp.servers_removed:
                lines.append(f"    servers: {_list(imp.servers_removed)}")
        else:
            if imp.next_before != imp.next_after:
                lines.append(f"    next fire times before: {_times(imp.next_before)}")
                lines.append(f"    next fire times after:  {_times(imp.next_after)}")
            if imp.slots_dropped:
                lines.append(f"    slots dropped: {_capped(imp.slots_dropped)}")
            if imp.slots_added:
                lines.append(f"    slots added: {_capped(imp.slots_added)}")
            if imp.servers_added:
                lines.append(f"    servers added: {_list(imp.servers_added)}")
            if imp.servers_removed:
                lines.append(f"    servers removed: {_list(imp.servers_removed)}")
    return lines


def revision_move(plan: Plan) -> str:
    """How the applied revision moves (call only when it does)."""
    after = plan.revision[:12] if plan.revision else "the working tree"
    if plan.applied_revision is None:
        return f"{'commit ' if plan.revision else ''}{after} becomes the applied revision"
    return f"the applied revision moves from {plan.applied_revision[:12]} to {after}"


def plan_lines(plan: Plan, colour: bool, where: str) -> list[str]:
    """The text form of a plan, line by line (pure: the golden tests compare it)."""
    visible = plan.visible
    if plan.base_revision:
        intro = f"Changes from {plan.base_revision[:12]} to {(plan.revision or '')[:12]}"
    else:
        intro = f"Plan for {printable(where)} against state serial {plan.base_serial}"
    lines = [intro + ":"]
    if not visible and plan.empty:
        if plan.moves_revision:
            lines += ["", "No changes to objects; " + revision_move(plan) + "."]
        else:
            lines += ["", "No changes. The state matches the desired state."]
        return lines
    for c in visible:
        lines.append("")
        lines.extend("  " + line for line in render_change(c, colour))
    s = plan.summary
    lines.append(
        f"\nPlan: {s['create']} to create, {s['update']} to update, {s['delete']} to delete, "
        f"{s['blocked']} blocked."
    )
    return lines


def render_plan(plan: Plan, colour: bool, where: str) -> None:
    """Print the plan in one write (10,000 changes are 60,000 lines)."""
    click.echo("\n".join(plan_lines(plan, colour, where)))
