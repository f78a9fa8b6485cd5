"""``reconciler plan`` and ``reconciler apply``."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from reconciler.cli.common import (
    diagnostics_json,
    emit_json,
    format_option,
    printable,
    render_diagnostics_text,
)
from reconciler.cli.state import state_option

if TYPE_CHECKING:
    from reconciler.engine.desired import OpenedSnapshot
    from reconciler.loading.loader import LoadResult
    from reconciler.model.desired import DesiredState
    from reconciler.stores.base import StateStore


def _horizon(text: str) -> timedelta:
    from reconciler.model.common import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _signed(
    source: OpenedSnapshot, result: LoadResult, store: StateStore | None, fmt: str
) -> str | None:
    """The key that signed the revision under ``requireSignedCommits`` (None when signatures
    are not required); prints one error line (JSON: the diagnostics) and exits 1 when the
    revision is not signed by a key that the state in force trusts."""
    from reconciler.engine.signing import check_signature

    check = check_signature(source, result, store)
    if check.diagnostic is None:
        return check.key
    d = check.diagnostic
    if fmt == "json":
        emit_json(diagnostics_json([d]))
    else:
        click.echo(f"error[{d.code}]: {printable(d.message)}", err=True)
    sys.exit(1)


def _load(
    repo: str, rev: str | None, fmt: str, now: datetime, state: str | None
) -> tuple[str, DesiredState, dict[str, str], str | None]:
    """The desired state of REPO, the schedules the access-change rule disables and the key
    that signed the revision; prints the diagnostics and exits 1 when the revision cannot be
    planned (it does not validate, or it is not signed as requireSignedCommits asks)."""
    from reconciler.engine import planning as eng

    source, result = eng.load_tracked_source(repo, rev, now)
    where = source.description
    if eng.state_missing(state):
        key = _signed(source, result, None, fmt)
    else:
        with eng.open_state(state, readonly=True) as store:
            key = _signed(source, result, store, fmt)
    desired = result.desired
    disabled: dict[str, str] = {}
    if desired is None and result.access_desired is not None and not eng.state_missing(state):
        with eng.open_state(state, readonly=True) as store:
            desired, disabled = eng.desired_for(result, store)
    if desired is None:
        if fmt == "json":
            emit_json(diagnostics_json(result.diagnostics))
        else:
            render_diagnostics_text(result.diagnostics)
            click.echo(
                f"error: {printable(where)} does not validate ({result.errors} errors); "
                "nothing was planned and the applied state stays in force",
                err=True,
            )
        sys.exit(1)
    if disabled and fmt == "text":
        render_diagnostics_text(result.diagnostics)
        click.echo(
            f"note: the only errors are owners of schedules unchanged since the state in force, "
            f"so {printable(where)} is planned anyway (an access change always applies) and "
            f"{len(disabled)} schedule(s) will be disabled",
            err=True,
        )
    return where, desired, disabled, key


@click.command()
@click.argument("repo", default=".", required=False)
@click.option("--rev", default=None, help="Revision to plan (default: head of the tracked branch).")
@click.option(
    "--base",
    default=None,
    metavar="REV",
    help="Diff REV -> --rev without touching the state (for pull requests).",
)
@click.option("--out", "out", default=None, metavar="FILE", help="Save the plan for apply --plan.")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when no object changes (also when only the revision moves), 2 when some "
    "do, 1 on error.",
)
@click.option(
    "--horizon", default="7d", show_default=True, help="How far ahead to compare fire times."
)
@format_option
@state_option
@click.pass_context
def plan(
    ctx: click.Context,
    repo: str,
    rev: str | None,
    base: str | None,
    out: str | None,
    detailed_exitcode: bool,
    horizon: str,
    fmt: str,
    state: str | None,
) -> None:
    """Show what applying REPO (a path or Git URL) would change in the state."""
    from reconciler.cli.render_plan import render_plan
    from reconciler.engine import planning as eng
    from reconciler.planning import planfile

    if out and base is not None:
        raise click.UsageError("--out cannot be used with --base (that plan has no state)")
    now = datetime.now(UTC)
    window = _horizon(horizon)
    where, desired, disabled, _ = _load(repo, rev, fmt, now, state)
    if base is not None:
        from reconciler.engine.desired import load_repo

        _, base_result = load_repo(repo, base, "head", now)
        if base_result.desired is None:
            click.echo(
                f"error: the base revision {printable(base)} does not validate; planning against "
                "it is impossible",
                err=True,
            )
            ctx.exit(1)
        assert base_result.desired is not None
        p = eng.plan_between(base_result.desired, desired, now, window)
    elif eng.state_missing(state):  # nothing applied yet: plan without creating the state
        p = eng.plan_against_empty(desired, now, window)
    else:
        with eng.open_state(state, readonly=True) as store:
            p = eng.plan_against_state(desired, store, now, window, disabled)
            # what apply will write: approvals by the authors of new content do not count
            p = eng.settle_authors(store, p, repo)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            # where runs find the repository, as apply records it: no credentials in the file
            fh.write(planfile.dumps(p, eng.source_location(repo)))
    if fmt == "json":
        emit_json(p.to_json())
    else:
        render_plan(p, sys.stdout.isatty(), where)
        if out:
            shown = printable(out)
            click.echo(
                f"\nSaved the plan to {shown}; apply it with: reconciler apply --plan {shown}"
            )
    if detailed_exitcode:
        ctx.exit(0 if p.empty else 2)
    ctx.exit(0)


@click.command()
@click.argument("repo", default=".", required=False)
@click.option(
    "--rev", default=None, help="Revision to apply (default: head of the tracked branch)."
)
@click.option("--plan", "plan_file", default=None, metavar="FILE", help="Apply a saved plan.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@format_option
@state_option
@click.pass_context
def apply(
    ctx: click.Context,
    repo: str,
    rev: str | None,
    plan_file: str | None,
    yes: bool,
    fmt: str,
    state: str | None,
) -> None:
    """Apply REPO's desired state, or a saved plan, to the state in one transaction."""
    from reconciler.cli.render_plan import render_plan
    from reconciler.engine import planning as eng
    from reconciler.errors import PlanFileError, StateConflict
    from reconciler.planning import planfile

    if not yes and plan_file is None and not sys.stdin.isatty():
        # refuse before reading or creating anything: a script must say --yes
        raise click.UsageError(
            "not asking for confirmation without a terminal: pass --yes to apply "
            "(or apply a saved plan with --plan FILE)"
        )
    now = datetime.now(UTC)
    if plan_file is None:  # a repository that cannot be read must not create a state
        where, desired, disabled, key = _load(repo, rev, fmt, now, state)
    with eng.open_state(state) as store:
        if plan_file is not None:
            try:
                with open(plan_file, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as e:
                raise PlanFileError(f"cannot read {plan_file}: {e.strerror}") from None
            p, source = planfile.loads(text, plan_file)
            info = store.info()
            if info.serial != p.base_serial:
                raise StateConflict(
                    f"{plan_file} was made against state serial {p.base_serial}, but the state "
                    f"is now at serial {info.serial}: something was applied since. Make a new "
                    "plan."
                )
            # the state is the one the plan was made from, so its revision is the one in force
            p = replace(p, applied_revision=info.revision)
            where = plan_file
            from reconciler.engine.desired import load_repo
            from reconciler.engine.signing import applied_settings

            if source is not None:  # the saved plan's commit, checked as a plan of it would be
                key = _signed(*load_repo(source, p.revision, "head", now), store, fmt)
            else:
                in_force = applied_settings(store)
                if in_force is not None and in_force.require_signed_commits is not None:
                    raise PlanFileError(
                        f"{plan_file} names no repository, so the signature of its commit "
                        "cannot be verified, and requireSignedCommits is in force: make a new "
                        "plan with this version"
                    )
                key = None
        else:
            source = repo
            p = eng.plan_against_state(desired, store, now, timedelta(days=7), disabled)
        if fmt == "text":
            render_plan(p, sys.stdout.isatty(), where)
        if p.nothing_to_apply:  # a new commit is applied even when no object changes
            if fmt == "json":
                emit_json({**p.to_json(), "applied": False, "serial": p.base_serial})
            else:
                click.echo("Nothing to apply.")
            ctx.exit(0)
        if not yes and plan_file is None:
            click.confirm(
                "\nApply these changes?" if not p.empty else "\nRecord the new revision?",
                abort=True,
            )
        serial = eng.apply_plan(store, p, now, source, key)
        if fmt == "json":
            emit_json({**p.to_json(), "applied": True, "serial": serial})
        else:
            s = p.summary
            click.echo(
                f"\nApplied: {s['create']} created, {s['update']} updated, "
                f"{s['delete']} deleted (revision {(p.revision or 'working tree')[:12]}, "
                f"state serial {serial})."
            )
    ctx.exit(0)
