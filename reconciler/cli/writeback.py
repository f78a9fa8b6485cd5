"""``pause``, ``resume``, ``assume-ownership`` and ``clone``: everyday actions as Git changes.

Each edits one schedule's YAML in the working tree of a local repository (comments, order and
quoting survive), validates the result, and commits the one file with ``--commit``. Parsing
and rendering only; :mod:`reconciler.engine.writeback` does the work.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import click

from reconciler.cli.common import emit_json, format_option, printable, render_diagnostics_text
from reconciler.errors import UsageError

repo_option = click.option(
    "--repo",
    default=".",
    show_default=True,
    metavar="PATH",
    help="The local repository (a Git working tree, or a plain directory) to edit.",
)
commit_option = click.option(
    "--commit",
    "do_commit",
    is_flag=True,
    help="Commit the edited file (author from the Git configuration). Nothing is pushed.",
)


def _finish(
    ctx: click.Context, repo: str, make: Callable[[datetime], object], do_commit: bool, fmt: str
) -> None:
    from reconciler.engine import writeback as wb

    now = datetime.now(UTC)
    edit = make(now)
    assert isinstance(edit, wb.Edit)
    wb.write_validated(repo, edit, now)
    if edit.new_errors:
        if fmt == "json":
            emit_json(
                {
                    "error": {
                        "code": "invalid-result",
                        "message": f"the edited {edit.path} would not validate; nothing changed",
                    },
                    "diagnostics": [
                        {
                            "path": d.path,
                            "line": d.line,
                            "column": d.column,
                            "code": d.code,
                            "message": d.message,
                        }
                        for d in edit.new_errors
                    ],
                }
            )
            click.echo(
                f"error: the edited {printable(edit.path)} would not validate, so nothing was "
                "changed",
                err=True,
            )
            ctx.exit(1)
        render_diagnostics_text(edit.new_errors, err=True)
        raise UsageError(f"the edited {edit.path} would not validate, so nothing was changed")
    sha = wb.commit(repo, edit) if do_commit else None
    if fmt == "json":
        emit_json(
            {
                "schedule": edit.schedule,
                "action": edit.action,
                "path": edit.path,
                "commit": sha,
                "message": edit.message,
                "diff": edit.diff(),
            }
        )
        return
    click.echo(f"{printable(edit.message)} ({printable(edit.path)})")
    if sha:
        click.echo(f"committed {sha[:12]}; push it for the reconciler to apply it")
    else:
        click.echo("edited the working tree; commit and push it for the reconciler to apply it")


@click.command()
@click.argument("schedule")
@click.option("--note", default=None, help="Why it is paused (pauseNote, shown in listings).")
@repo_option
@commit_option
@format_option
@click.pass_context
def pause(
    ctx: click.Context, schedule: str, note: str | None, repo: str, do_commit: bool, fmt: str
) -> None:
    """Pause SCHEDULE in Git: set enabled: false (and pauseNote) in its YAML.

    Once applied its slots are recorded skipped (paused) until it is resumed.
    """
    from reconciler.engine import writeback as wb

    _finish(ctx, repo, lambda now: wb.pause(repo, schedule, note, now), do_commit, fmt)


@click.command()
@click.argument("schedule")
@repo_option
@commit_option
@format_option
@click.pass_context
def resume(ctx: click.Context, schedule: str, repo: str, do_commit: bool, fmt: str) -> None:
    """Resume a paused SCHEDULE in Git: remove enabled: false and its pauseNote."""
    from reconciler.engine import writeback as wb

    _finish(ctx, repo, lambda now: wb.resume(repo, schedule, now), do_commit, fmt)


@click.command("assume-ownership")
@click.argument("schedule")
@click.option("--as", "user", required=True, metavar="USER", help="The Policy user to own it.")
@repo_option
@commit_option
@format_option
@click.pass_context
def assume_ownership(
    ctx: click.Context, schedule: str, user: str, repo: str, do_commit: bool, fmt: str
) -> None:
    """Make USER the owner of SCHEDULE in Git (its runs are done as USER from then on).

    USER must be a Policy user who holds run on the schedule's template, or the result would
    not validate. A schedule disabled because its owner left is enabled again once applied.
    """
    from reconciler.engine import writeback as wb

    _finish(ctx, repo, lambda now: wb.assume_ownership(repo, schedule, user, now), do_commit, fmt)


@click.command()
@click.argument("schedule")
@click.argument("new_name", metavar="NEW-NAME")
@repo_option
@commit_option
@format_option
@click.pass_context
def clone(
    ctx: click.Context, schedule: str, new_name: str, repo: str, do_commit: bool, fmt: str
) -> None:
    """Copy SCHEDULE as NEW-NAME, in the same file, paused.

    The copy starts paused (two identical schedules would run the same job twice): edit it,
    then reconciler resume NEW-NAME.
    """
    from reconciler.engine import writeback as wb

    _finish(ctx, repo, lambda now: wb.clone(repo, schedule, new_name, now), do_commit, fmt)
