"""``reconciler validate``: schema and cross-reference checks of a repository."""

from __future__ import annotations

import click

from reconciler.cli.common import (
    diagnostics_json,
    emit_json,
    plural,
    printable,
    render_diagnostics_github,
    render_diagnostics_text,
)


@click.command()
@click.argument("repo", default=".", required=False)
@click.option("--rev", default=None, help="Validate this Git revision instead of the working tree.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="text for people, json for scripts, github for Actions annotations.",
)
@click.pass_context
def validate(ctx: click.Context, repo: str, rev: str | None, fmt: str) -> None:
    """Check the desired state in REPO (default: the working tree of .) for errors.

    Prints every problem at once as PATH:LINE:COL: error[CODE]: MESSAGE. Exits 1 when there
    is an error, 0 otherwise (warnings allowed).
    """
    from reconciler.engine.desired import load_repo

    source, result = load_repo(repo, rev, "worktree")
    if fmt == "json":
        emit_json(diagnostics_json(result.diagnostics))
    elif fmt == "github":
        render_diagnostics_github(result.diagnostics)
    else:
        render_diagnostics_text(result.diagnostics)
        docs = plural(len(result.documents), "document")
        where = printable(source.description)
        if result.diagnostics:
            click.echo(
                f"{plural(result.errors, 'error')}, {plural(result.warnings, 'warning')} "
                f"in {docs} ({where})",
                err=True,
            )
        else:
            click.echo(f"ok: {docs}, no problems ({where})", err=True)
    ctx.exit(1 if result.errors else 0)
