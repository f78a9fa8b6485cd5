"""``reconciler schedules``: the applied schedules, their state, next fire times, last result."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from reconciler.cli.common import emit_json, format_option, printable
from reconciler.cli.state import state_option


@click.command()
@click.option(
    "--upcoming",
    "count",
    type=click.IntRange(0, 100),
    default=3,
    show_default=True,
    help="How many next fire times to show.",
)
@click.option(
    "--system",
    is_flag=True,
    help="Also list the daemon's own recurring jobs (reconcile, history pruning, reaping).",
)
@format_option
@state_option
def schedules(count: int, system: bool, fmt: str, state: str | None) -> None:
    """List the applied schedules with state, next fire times and last result."""
    from reconciler.engine.listing import list_schedules, system_json
    from reconciler.engine.planning import open_state, state_missing

    rows = []
    system_rows: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    if not state_missing(state):  # a state that does not exist is not created by a listing
        with open_state(state, readonly=True) as store:
            rows = list_schedules(store, now, count)
            if system:
                system_rows = system_json(store)
    if fmt == "json":
        out: dict[str, object] = {"schedules": [r.to_json() for r in rows]}
        if system:
            out["system"] = system_rows
        emit_json(out)
        return
    if system:
        click.echo(
            "System jobs of the daemon:" if system_rows else "No daemon has run on this state."
        )
        for j in system_rows:
            click.echo(
                f"  {j['name']!s:<15} every {j['every_seconds']:g} s, last {j['last_at']}"
                + (f"  {printable(str(j['detail']))}" if j["detail"] else "")
            )
        click.echo("")
    if not rows:
        click.echo("No schedules applied yet (run reconciler apply).")
        return
    names = [printable(r.name) for r in rows]
    width = max(len(n) for n in names)
    for name, r in zip(names, rows, strict=True):
        nxt = r.next[0].isoformat() if r.next else "-"
        last = f"{r.last_run.status} (run {r.last_run.id})" if r.last_run else "never ran"
        reason = f" [{printable(r.reason)}]" if r.reason and r.state != "active" else ""
        click.echo(f"{name:<{width}}  {r.state:<17} next {nxt:<25}  last {last}{reason}")
