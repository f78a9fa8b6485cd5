"""Options shared by the commands that use the state store."""

from __future__ import annotations

import click

state_option = click.option(
    "--state",
    "state",
    default=None,
    envvar="RECONCILER_STATE",
    metavar="URL",
    help="State store: a SQLite path, sqlite:///path or postgresql://... "
    "[env RECONCILER_STATE; default .reconciler/state.sqlite]",
)


def need_state(state: str | None) -> None:
    """Stop with one line when there is no state to read (a command that only reads, or acts
    on what was applied, never creates one)."""
    from reconciler.engine.planning import state_missing, state_url

    if state_missing(state):
        raise click.ClickException(
            f"no state at {state_url(state)}: nothing has been applied yet (reconciler apply, "
            "or reconciler serve)"
        )
