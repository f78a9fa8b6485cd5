"""``reconciler run``, ``runs``, ``runs show``, ``logs`` and ``drift``."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any

import click

from reconciler.cli.common import emit_json, format_option, parse_instant, printable
from reconciler.cli.state import need_state, state_option

#: exit status of ``run --wait`` per final run status
EXIT_CODES = {"succeeded": 0, "failed": 1, "timed-out": 124, "cancelled": 130}
FINAL = ("succeeded", "failed", "cancelled", "timed-out", "abandoned", "skipped")


def _now() -> datetime:
    return datetime.now(UTC)


def _applied(state: str | None) -> bool:
    """Whether there is a state to read; commands that only read never create one."""
    from reconciler.engine.planning import state_missing

    return not state_missing(state)


@click.command()
@click.argument("template")
@click.option("--server", "servers", multiple=True, help="Target this server (repeatable).")
@click.option("--role", "roles", multiple=True, help="Target servers in this role.")
@click.option("--env", "envs", multiple=True, help="Target servers in this environment.")
@click.option("--var", "pairs", multiple=True, metavar="NAME=VALUE", help="A variable value.")
@click.option("--simulate", is_flag=True, help="Check mode only: report, change nothing.")
@click.option(
    "--at",
    "at",
    default=None,
    metavar="TIME",
    help="Queue a one-off for this instant (ISO-8601 with offset); the daemon runs it.",
)
@click.option("--wait", is_flag=True, help="Run in the foreground and exit with its status.")
@format_option
@state_option
@click.pass_context
def run(
    ctx: click.Context,
    template: str,
    servers: tuple[str, ...],
    roles: tuple[str, ...],
    envs: tuple[str, ...],
    pairs: tuple[str, ...],
    simulate: bool,
    at: str | None,
    wait: bool,
    fmt: str,
    state: str | None,
) -> None:
    """Run TEMPLATE now (or --at TIME) from the applied revision (trigger cli).

    Targets default to the template's; with none at all the playbook runs on localhost.
    When a daemon (reconciler serve) with workers is alive on the state, the run is queued
    for it; otherwise it runs in this process (in the background without --wait). With --wait
    the exit status is 0 succeeded, 1 failed, 124 timed out, 130 cancelled.
    """
    from reconciler.engine import running as eng
    from reconciler.engine.planning import open_state, state_url
    from reconciler.model.common import Targets

    targets = Targets(servers=list(servers), roles=list(roles), environments=list(envs))
    when = None if at is None else parse_instant(at, "--at")
    need_state(state)
    # from here on SIGINT, SIGTERM and SIGHUP end a run that exists in `cancelled`
    with eng.cancel_on_signals() as stop, open_state(state) as store:
        tmpl = eng.applied_template(store, template)
        values = eng.parse_vars(tmpl, pairs)
        sensitive = [k for k in values if (p := tmpl.spec.prompt(k)) and p.sensitive]
        if when is not None and sensitive:
            raise click.UsageError(
                f"--var {sensitive[0]} is sensitive, and a value given on the command line is "
                "never stored: it cannot be queued for later (give it with valueFrom in a "
                "schedule instead)"
            )
        daemon = when is not None or (not sensitive and _daemon_alive(store))
        if daemon:
            record, _ = eng.prepare_run(
                store,
                template,
                targets,
                values,
                simulate,
                "cli",
                _now(),
                requested_by="cli",
                not_before=when,
            )
            _queued_for_daemon(ctx, store, record, when, wait, fmt, stop)
            return
        record, resolved = eng.prepare_run(
            store,
            template,
            targets,
            values,
            simulate,
            "cli",
            _now(),
            requested_by="cli",
            claim=wait,
        )
        try:
            secrets = {k: str(v) for k, v in resolved.secret_values.items()}
            for name, ref in resolved.secrets.items():
                secrets[name] = eng.resolve_secret(ref)
        except Exception as e:  # the run exists: it must not stay queued
            store.finish_run(record.id, "failed", _now(), str(e))
            raise
        untrusted = {k: v for k, v in resolved.untrusted.items()}
        if not wait and stop.is_set():
            store.finish_run(record.id, "cancelled", _now(), "cancelled before it started")
            if fmt == "json":
                emit_json({"run": {"id": record.id, "status": "cancelled"}})
            else:
                click.echo(f"run {record.id} cancelled")
            ctx.exit(EXIT_CODES["cancelled"])
        if not wait:
            from reconciler.engine import detached

            detached.start(
                record.id, state_url(state), secrets, untrusted, eng.secret_env_names(store)
            )
            if fmt == "json":
                emit_json({"run": {"id": record.id, "status": record.status}})
            else:
                click.echo(
                    f"run {record.id} queued; follow it with: reconciler logs {record.id} --follow"
                )
            ctx.exit(0)
        from reconciler.executors.ansible import AnsibleExecutor

        tty = sys.stdout.isatty() and fmt == "text"
        if fmt == "text":
            click.echo(
                f"run {record.id}: {printable(template)}" + (" (simulate)" if simulate else "")
            )
        # a one-shot process: a worker per phase, no pre-forked zygote to start and stop
        with AnsibleExecutor(prefork=False) as executor:
            final = eng.execute_run(
                store,
                record,
                executor,
                secrets,
                untrusted,
                _now,
                on_progress=_progress_printer() if tty else None,
                cancel=stop,
            )
    if fmt == "json":
        emit_json(eng.run_json(final))
    else:
        _print_run(final)
    ctx.exit(EXIT_CODES.get(final.status, 1))


@click.command()
@click.argument("run_id", type=int)
@click.option("--wait", is_flag=True, help="Run in the foreground and exit with its status.")
@format_option
@state_option
@click.pass_context
def retry(ctx: click.Context, run_id: int, wait: bool, fmt: str, state: str | None) -> None:
    """Run the finished run RUN_ID again, as a new run (trigger retry).

    The new run has the same template, schedule, slot, targets, mode and caller values, and
    comes from the applied revision; the original run and its ledger entry stay as they are.
    A live daemon (reconciler serve) with workers runs it; otherwise it runs in this process
    (in the background without --wait). Exit status with --wait as for reconciler run.
    """
    from reconciler.engine import running as eng
    from reconciler.engine.planning import open_state, state_url
    from reconciler.engine.runs import submit_retry

    need_state(state)
    with eng.cancel_on_signals() as stop, open_state(state) as store:
        if _daemon_alive(store):
            record = submit_retry(store, run_id, _now(), "cli")
            _queued_for_daemon(ctx, store, record, None, wait, fmt, stop)
            return
        record = submit_retry(
            store, run_id, _now(), "cli", claim_by=eng.worker_id() if wait else None
        )
        if not wait:
            from reconciler.engine import detached

            detached.start(
                record.id, state_url(state), {}, {}, eng.secret_env_names(store), from_state=True
            )
            if fmt == "json":
                emit_json({"run": {"id": record.id, "status": record.status}})
            else:
                click.echo(
                    f"run {record.id} queued (a retry of run {run_id}); follow it with: "
                    f"reconciler logs {record.id} --follow"
                )
            ctx.exit(0)
        from reconciler.executors.ansible import AnsibleExecutor

        if fmt == "text":
            click.echo(f"run {record.id}: a retry of run {run_id}")
        tty = sys.stdout.isatty() and fmt == "text"
        with AnsibleExecutor(prefork=False) as executor:
            final = eng.execute_run(
                store,
                record,
                executor,
                {},
                {},
                _now,
                on_progress=_progress_printer() if tty else None,
                cancel=stop,
                from_state=True,
            )
    if fmt == "json":
        emit_json(eng.run_json(final))
    else:
        _print_run(final)
    ctx.exit(EXIT_CODES.get(final.status, 1))


def _daemon_alive(store: Any) -> bool:
    """A ``serve`` replica with workers heartbeat the state recently."""
    from reconciler.engine.status import REPLICA_TTL

    return any(r.workers > 0 for r in store.list_replicas(_now() - REPLICA_TTL))


def _queued_for_daemon(
    ctx: click.Context,
    store: Any,
    record: Any,
    when: datetime | None,
    wait: bool,
    fmt: str,
    stop: Any,
) -> None:
    """The run was queued for the daemon: say so, and with --wait follow it to its end."""
    from reconciler.engine.running import run_json

    if not wait:
        if fmt == "json":
            emit_json({"run": {"id": record.id, "status": record.status}})
        else:
            what = f"for {when.isoformat()}" if when else "for the daemon"
            click.echo(
                f"run {record.id} queued {what}; follow it with: "
                f"reconciler logs {record.id} --follow"
            )
        ctx.exit(0)
    if fmt == "text":
        click.echo(f"run {record.id} queued for the daemon; following it (Ctrl-C cancels it)")
    offset = 0
    cancelled = False
    while True:  # until the run is final; a signal asks the daemon to cancel it
        current = store.get_run(record.id)
        part = store.read_log(record.id, offset)
        if part.text and fmt == "text":
            click.echo(part.text, nl=False)
        offset = part.next_offset
        if current is None or current.status in FINAL:
            break
        if stop.is_set() and not cancelled:
            store.request_cancel(record.id, _now(), "the user (a signal to reconciler run)")
            cancelled = True
        stop.wait(0.3)
    final = store.get_run(record.id)
    if fmt == "json":
        emit_json(run_json(final))
    else:
        _print_run(final)
    ctx.exit(EXIT_CODES.get(final.status, 1))


def _progress_printer() -> Any:
    def show(p: Any) -> None:
        if p.event == "phase":
            click.echo(click.style(f"== {p.phase}", bold=True))
        elif p.host and p.status:
            colour = {
                "ok": "green",
                "changed": "yellow",
                "failed": "red",
                "unreachable": "red",
                "skipped": "cyan",
            }.get(p.status)
            click.echo(
                f"  {printable(p.host):<20} {click.style(p.status, fg=colour):<18} "
                f"{printable(p.task or '')}"
            )

    return show


def _print_provenance(r: Any) -> None:
    from reconciler.engine.provenance import provenance_json

    p = provenance_json(r)
    click.echo("Provenance:")
    click.echo(f"  commit       {printable(p['commit'] or 'working tree')}")
    click.echo(f"  signing key  {printable(p['signing_key'] or 'none (unsigned commits allowed)')}")
    if p["content_hash"]:
        who = ", ".join(printable(u) for u in p["approvers"]) or "nobody yet"
        click.echo(f"  approval     content {printable(p['content_hash'])}, approved by {who}")
    else:
        click.echo("  approval     not required")
    click.echo(f"  trigger      {p['trigger']}" + (f", slot {p['slot']}" if p["slot"] else ""))
    click.echo(f"  replica      {printable(p['replica'] or 'not claimed by a worker')}")


def _print_run(r: Any) -> None:
    click.echo(f"run {r.id}: {r.status}" + (f": {printable(r.message)}" if r.message else ""))
    click.echo(
        f"  template {printable(r.template)}"
        + (f", schedule {printable(r.schedule)}" if r.schedule else "")
        + f", trigger {r.trigger}, commit {printable((r.commit or 'working tree')[:12])}"
    )
    if r.slot:
        click.echo(f"  slot {r.slot.isoformat()}")
    if r.retry_of:
        click.echo(f"  a retry of run {r.retry_of}")
    if r.started_at:
        end = r.finished_at.isoformat() if r.finished_at else "running"
        click.echo(f"  started {r.started_at.isoformat()}, finished {end}")
    for h in r.hosts:
        click.echo(
            f"  {printable(h.server):<20} {h.status:<12} ok={h.ok} changed={h.changed} "
            f"failed={h.failed} unreachable={h.unreachable} skipped={h.skipped}"
            + (" drifted" if h.drifted else "")
        )


@click.group(invoke_without_command=True)
@click.option("--schedule", default=None, help="Only runs of this schedule.")
@click.option("--status", default=None, help="Only runs with this status.")
@click.option("--template", default=None, help="Only runs of this template.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@format_option
@state_option
@click.pass_context
def runs(
    ctx: click.Context,
    schedule: str | None,
    status: str | None,
    template: str | None,
    limit: int,
    fmt: str,
    state: str | None,
) -> None:
    """Run history, newest first (`runs show ID` for one run)."""
    ctx.obj = {"state": state}
    if ctx.invoked_subcommand is not None:
        return
    from reconciler.engine.planning import open_state
    from reconciler.engine.running import run_json

    if not _applied(state):
        found = []
    else:
        with open_state(state, readonly=True) as store:
            found = store.list_runs(
                schedule=schedule,
                status=status,  # type: ignore[arg-type]
                template=template,
                limit=limit,
            )
    if fmt == "json":
        emit_json({"runs": [run_json(r) for r in found]})
        return
    if not found:
        click.echo("No runs.")
        return
    for r in found:
        when = (r.started_at or r.created_at).isoformat()
        click.echo(
            f"{r.id:>6}  {r.status:<10} {r.trigger:<9} {printable(r.template):<20} "
            f"{printable(r.schedule or '-'):<24} {when}"
        )


@runs.command("show")
@click.argument("run_id", type=int)
@format_option
@state_option
@click.pass_context
def runs_show(ctx: click.Context, run_id: int, fmt: str, state: str | None) -> None:
    """One run: status, commit, slot, per-server results."""
    from reconciler.engine.planning import open_state
    from reconciler.engine.running import run_json

    state = state or ctx.obj.get("state")
    need_state(state)
    with open_state(state, readonly=True) as store:
        r = store.get_run(run_id)
    if r is None:
        raise click.ClickException(f"no run {run_id}")
    if fmt == "json":
        emit_json(run_json(r))
    else:
        _print_run(r)
        _print_provenance(r)


@click.command()
@click.argument("run_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@state_option
def logs(run_id: int, follow: bool, state: str | None) -> None:
    """The log of a run (secrets are redacted before it is stored)."""
    from reconciler.engine.planning import open_state

    need_state(state)
    with open_state(state, readonly=True) as store:
        if store.get_run(run_id) is None:
            raise click.ClickException(f"no run {run_id}")
        offset = 0
        while True:
            part = store.read_log(run_id, offset)
            if part.text:
                click.echo(part.text, nl=False)
            offset = part.next_offset
            if not follow:
                return
            current = store.get_run(run_id)
            if current is None or current.status in FINAL:
                rest = store.read_log(run_id, offset)
                if rest.text:
                    click.echo(rest.text, nl=False)
                return
            time.sleep(0.5)


@click.command()
@click.option("--server", default=None, help="Only this server.")
@click.option("--template", default=None, help="Only this template.")
@format_option
@state_option
def drift(server: str | None, template: str | None, fmt: str, state: str | None) -> None:
    """Configuration drift per server and template, as the latest configuration runs found."""
    from reconciler.engine.planning import open_state

    if not _applied(state):
        found = []
    else:
        with open_state(state, readonly=True) as store:
            found = store.list_drift(server=server, template=template, latest=True)
    if fmt == "json":
        emit_json(
            {
                "drift": [
                    {
                        "server": d.server,
                        "template": d.template,
                        "state": d.state,
                        "run": d.run_id,
                        "at": d.at.isoformat(),
                        "details": dict(d.details),
                    }
                    for d in found
                ]
            }
        )
        return
    if not found:
        click.echo("No drift recorded yet (configuration templates record it when they run).")
        return
    for d in found:
        outcome = printable(str(d.details.get("outcome", "")))
        click.echo(
            f"{printable(d.server):<20} {printable(d.template):<20} {d.state:<9} ({outcome}) "
            f"run {d.run_id} at {d.at.isoformat()}"
        )
        for task in d.details.get("tasks", []) if d.state == "drifted" else []:
            click.echo(f"    {printable(str(task.get('task')))}")
