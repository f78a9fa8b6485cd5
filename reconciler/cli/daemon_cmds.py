"""``reconciler status``, ``slots`` and ``cancel``: what the daemon does, read from the state."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from reconciler.cli.common import emit_json, format_option, parse_instant
from reconciler.cli.state import need_state, state_option


def _now() -> datetime:
    return datetime.now(UTC)


@click.command()
@format_option
@state_option
def status(fmt: str, state: str | None) -> None:
    """Applied and last attempted revision, replicas alive, and the run queue."""
    from reconciler.cli.common import printable
    from reconciler.engine.planning import open_state
    from reconciler.engine.status import status_json

    need_state(state)
    with open_state(state, readonly=True) as store:
        data = status_json(store, _now())
    if fmt == "json":
        emit_json(data)
        return
    applied = data["applied"]
    click.echo(
        f"applied:   {applied['revision'] or 'nothing'} (serial {applied['serial']}"
        + (f", at {applied['at']})" if applied["at"] else ")")
    )
    if applied.get("signing_key"):
        click.echo(f"  signed by {printable(applied['signing_key'])}")
    att = data["attempted"]
    if att is None:
        click.echo("attempted: no reconcile pass yet")
    else:
        ok = "ok" if att["ok"] else "FAILED"
        click.echo(f"attempted: {att['revision'] or '-'} at {att['at']}: {ok}")
        if att.get("message") and not att["ok"]:
            click.echo(f"  {printable(att['message'])}")
        for d in att["diagnostics"]:
            click.echo(
                f"  {printable(str(d['path']))}:{d['line']}:{d['column']}: "
                f"{d['severity']}[{d['code']}]: {printable(str(d['message']))}"
            )
    reps = data["replicas"]
    click.echo(f"replicas:  {len(reps) or 'none alive'}")
    for r in reps:
        click.echo(
            f"  {r['id']} on {r['host']} pid {r['pid']}, {r['workers']} worker(s), "
            f"since {r['started']}, seen {r['seen']}"
        )
    q = data["queue"]
    click.echo(f"queue:     {q['queued']} queued, {q['running']} running")


@click.command()
@click.argument("schedule", required=False)
@click.option("--since", default=None, metavar="INSTANT", help="Only slots at or after this.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@format_option
@state_option
def slots(schedule: str | None, since: str | None, limit: int, fmt: str, state: str | None) -> None:
    """The slot ledger: every due slot and what became of it (a run, or skipped and why)."""
    from reconciler.cli.common import printable
    from reconciler.engine.ledger import ledger_rows
    from reconciler.engine.planning import open_state

    start = None if since is None else parse_instant(since, "--since")
    need_state(state)
    with open_state(state, readonly=True) as store:
        if (
            schedule is not None
            and store.get_object("Schedule", schedule) is None
            and not store.list_slots(schedule, limit=1)
        ):
            raise click.ClickException(f'no schedule "{schedule}" in the state')
        rows = ledger_rows(store, schedule, start, limit)
    if fmt == "json":
        emit_json({"slots": rows})
        return
    if not rows:
        click.echo("No slots recorded yet.")
        return
    for r in rows:
        what = f"run {r['run']}" if r["outcome"] == "run" else f"skipped ({r['reason']})"
        span = f" .. {r['until']} ({r['count']} slots)" if r.get("count") else ""
        click.echo(f"{r['slot']}{span}  {printable(r['schedule'])}  {what}")
        if r["detail"]:
            click.echo(f"    {printable(r['detail'])}")


@click.command()
@click.argument("run_id", type=int)
@format_option
@state_option
def cancel(run_id: int, fmt: str, state: str | None) -> None:
    """Cancel a queued or running run (it is recorded cancelled)."""
    from reconciler.engine.planning import open_state
    from reconciler.engine.running import cancel_run, run_json

    need_state(state)
    with open_state(state) as store:
        outcome, rec = cancel_run(store, run_id, _now(), "reconciler cancel")
    if outcome == "not-found" or rec is None:
        raise click.ClickException(f"no run {run_id}")
    if outcome == "final":
        raise click.ClickException(f"run {run_id} already ended: {rec.status}")
    if fmt == "json":
        emit_json({"run": run_json(rec), "cancel_requested": outcome == "requested"})
    elif outcome == "cancelled":
        click.echo(f"run {run_id} cancelled")
    else:
        click.echo(f"run {run_id} is running: its worker cancels it within a few seconds")
