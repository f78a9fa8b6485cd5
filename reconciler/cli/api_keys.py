"""``reconciler api-key create|list|revoke``: keys for the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import click

from reconciler.cli.common import emit_json, format_option, printable
from reconciler.cli.state import state_option

if TYPE_CHECKING:
    from reconciler.stores.base import Scope


@click.group("api-key")
def api_key() -> None:
    """Create, list and revoke API keys (the secret is shown once; only a hash is stored)."""


@api_key.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["trigger", "read", "approve"]),
    help="What the key may do (repeatable).",
)
@click.option(
    "--template",
    "templates",
    multiple=True,
    metavar="NAME",
    help="A template a trigger key may trigger (repeatable; a glob like deploy-*).",
)
@click.option("--user", default=None, help="The Policy user an approve key acts as.")
@format_option
@state_option
def create(
    name: str,
    scopes: tuple[str, ...],
    templates: tuple[str, ...],
    user: str | None,
    fmt: str,
    state: str | None,
) -> None:
    """Create key NAME and print its secret, once."""
    from reconciler.engine.keys import create_key
    from reconciler.engine.planning import open_state

    with open_state(state) as store:
        key, secret = create_key(
            store,
            name,
            cast("list[Scope]", list(scopes)),
            templates,
            user,
            datetime.now(UTC),
        )
    if fmt == "json":
        emit_json(
            {
                "name": key.name,
                "secret": secret,
                "scopes": list(key.scopes),
                "templates": list(key.templates),
                "user": key.user,
            }
        )
        return
    click.echo(f"API key {key.name} created ({', '.join(key.scopes)}). Its secret, shown once:")
    click.echo(secret)


@api_key.command("list")
@format_option
@state_option
def list_keys(fmt: str, state: str | None) -> None:
    """The keys, without their secrets."""
    from reconciler.engine.planning import open_state, state_missing

    keys = []
    if not state_missing(state):
        with open_state(state, readonly=True) as store:
            keys = store.list_api_keys()
    rows: list[dict[str, Any]] = [
        {
            "name": k.name,
            "scopes": list(k.scopes),
            "templates": list(k.templates),
            "user": k.user,
            "created": k.created_at.isoformat(),
            "revoked": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        for k in keys
    ]
    if fmt == "json":
        emit_json({"api_keys": rows})
        return
    if not rows:
        click.echo("No API keys.")
    for r in rows:
        extra = f" templates {', '.join(r['templates'])}" if r["templates"] else ""
        extra += f" as {r['user']}" if r["user"] else ""
        status = f"revoked {r['revoked']}" if r["revoked"] else f"created {r['created']}"
        click.echo(f"{printable(r['name'])}  {','.join(r['scopes'])}{printable(extra)}  {status}")


@api_key.command("revoke")
@click.argument("name")
@state_option
def revoke(name: str, state: str | None) -> None:
    """Revoke key NAME: it stops working at once."""
    from reconciler.engine.planning import open_state

    with open_state(state) as store:
        if not store.revoke_api_key(name, datetime.now(UTC)):
            raise click.ClickException(f"no active API key named {name!r}")
    click.echo(f"API key {name} revoked")
