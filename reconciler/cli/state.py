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
