"""``reconciler approvals | approve | deny | dry-run``: the approval queue and its actions.

Parses and renders only; the decisions are :mod:`reconciler.engine.approving`'s (the same path
as the HTTP API and forge reviews).
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from reconciler.cli.common import emit_json, format_option, printable
from reconciler.cli.state import need_state, state_option


def _now() -> datetime:
    return datetime.now(UTC)


@click.command()
@format_option
@state_option
def approvals(fmt: str, state: str | None) -> None:
    """List the schedules that need approval: state, content hash, who approved, how many
    are required (waiting ones first)."""
    from reconciler.engine.approving import approval_queue
    from reconciler.engine.planning import open_state, state_missing

    queue = []
    if not state_missing(state):  # a listing never creates a state
        with open_state(state, readonly=True) as store:
            queue = approval_queue(store)
    if fmt == "json":
        emit_json({"approvals": [e.to_json() for e in queue]})
        return
    if not queue:
        click.echo("No applied schedule needs approval.")
        return
    rows = [
        (
            printable(e.schedule),
            printable(e.template),
            e.state,
            f"{len(e.approved_by)}/{e.required}",
            printable(", ".join(e.approved_by) or "-"),
            printable(e.author or "-"),
            e.content_hash[:12],
        )
        for e in queue
    ]
    head = ("SCHEDULE", "TEMPLATE", "STATE", "COUNT", "APPROVED BY", "AUTHOR", "CONTENT")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for e in queue:
        if e.state != "active" and e.reason:
            click.echo(f"{printable(e.schedule)}: {printable(e.reason)}")


def _decide(
    name: str,
    user: str,
    verdict: str,
    force: bool,
    reason: str | None,
    fmt: str,
    state: str | None,
) -> None:
    from reconciler.engine.approving import decide
    from reconciler.engine.planning import open_state

    need_state(state)
    with open_state(state) as store:
        result = decide(
            store,
            name,
            user,
            verdict,  # type: ignore[arg-type]
            "cli",
            _now(),
            force=force,
            reason=reason,
        )
    if fmt == "json":
        emit_json(
            {
                "schedule": result.schedule,
                "recorded": result.recorded,
                "state": result.state,
                "message": result.message,
            }
        )
    else:
        click.echo(printable(result.message))


@click.command()
@click.argument("name")
@click.option("--as", "user", required=True, metavar="USER", help="The Policy user approving.")
@click.option(
    "--force",
    is_flag=True,
    help="Approve an at: schedule whose time passed while it waited; it runs right away.",
)
@format_option
@state_option
def approve(name: str, user: str, force: bool, fmt: str, state: str | None) -> None:
    """Approve the applied content of schedule NAME as USER.

    USER must be one of the template's approvers holding approve on it in the Policy in force,
    and not an author of the change. Exit 1, with the reason, when it cannot be recorded."""
    _decide(name, user, "approve", force, None, fmt, state)


@click.command()
@click.argument("name")
@click.option("--as", "user", required=True, metavar="USER", help="The Policy user denying.")
@click.option("--reason", default=None, help="Why (recorded with the denial).")
@format_option
@state_option
def deny(name: str, user: str, reason: str | None, fmt: str, state: str | None) -> None:
    """Deny the applied content of schedule NAME as USER: it stays denied until its content
    changes in Git (or USER approves it after all)."""
    _decide(name, user, "deny", False, reason, fmt, state)


@click.command("dry-run")
@click.argument("name")
@format_option
@state_option
def dry_run(name: str, fmt: str, state: str | None) -> None:
    """Queue a simulate run (check mode) of schedule NAME as it is applied, without approving
    it; a daemon (reconciler serve) runs it. Prints the run id."""
    from reconciler.engine.approving import dry_run as queue_dry_run
    from reconciler.engine.planning import open_state
    from reconciler.engine.status import REPLICA_TTL

    need_state(state)
    with open_state(state) as store:
        run = queue_dry_run(store, name, "cli", "cli", _now())
        daemon = any(r.workers > 0 for r in store.list_replicas(_now() - REPLICA_TTL))
    if fmt == "json":
        emit_json({"run": {"id": run.id, "status": run.status, "simulate": run.simulate}})
        return
    click.echo(
        f"run {run.id} queued (simulate) for schedule {printable(name)}; follow it with: "
        f"reconciler logs {run.id} --follow"
    )
    if not daemon:
        click.echo(
            "no daemon with workers is running on this state: the run starts when one does "
            "(reconciler serve)"
        )
