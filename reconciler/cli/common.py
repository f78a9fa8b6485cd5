"""Options and renderers shared by the commands. Only the CLI prints."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from reconciler.model.diagnostics import Diagnostic, Severity

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def colour() -> bool:
    return sys.stdout.isatty()


def render_diagnostics_text(diags: Sequence[Diagnostic]) -> None:
    for d in diags:
        sev = str(d.severity)
        if colour():
            sev = click.style(
                sev, fg="red" if d.severity is Severity.ERROR else "yellow", bold=True
            )
        click.echo(f"{d.path}:{d.line}:{d.column}: {sev}[{d.code}]: {d.message}")
        if d.hint:
            click.echo(f"  hint: {d.hint}")


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_diagnostics_github(diags: Sequence[Diagnostic]) -> None:
    for d in diags:
        level = "error" if d.severity is Severity.ERROR else "warning"
        msg = f"[{d.code}] {d.message}" + (f" (hint: {d.hint})" if d.hint else "")
        click.echo(
            f"::{level} file={_gh_escape(d.path, True)},line={d.line},col={d.column},"
            f"title={_gh_escape(d.code, True)}::{_gh_escape(msg)}"
        )


def diagnostics_json(diags: Sequence[Diagnostic]) -> dict[str, Any]:
    return {
        "diagnostics": [d.to_json() for d in diags],
        "errors": sum(1 for d in diags if d.severity is Severity.ERROR),
        "warnings": sum(1 for d in diags if d.severity is Severity.WARNING),
    }


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
