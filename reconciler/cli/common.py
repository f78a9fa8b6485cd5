"""Options and renderers shared by the commands. Only the CLI prints.

Every value that comes from a repository (paths, keys, names, messages that quote values) goes
through :func:`printable` before it reaches a text line, and :func:`emit_json` before it
reaches JSON: a file named ``x\n::error::...`` must not start a line of its own in a CI log,
and a file name that is not UTF-8 must not make stdout unwritable or JSON undecodable.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime
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


#: what a terminal or a CI log would act on or hide: C0 and C1 controls (newlines, escape
#: sequences), DEL, Unicode line and paragraph separators, bidirectional overrides and
#: surrogates (a path's undecodable bytes, as ``os.fsdecode`` and pygit2 keep them)
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by the surrogateescape handler
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` safe for one line of text output: controls as ``\\n``, ``\\t``, ``\\xNN``,
    ``\\uNNNN``; undecodable bytes of a path as ``\\xNN``. Anything else is kept."""
    return _UNPRINTABLE.sub(_escape, text) if _UNPRINTABLE.search(text) else text


def _no_surrogates(text: str) -> str:
    return _SURROGATE.sub(_escape, text)


def json_safe(data: Any) -> Any:
    """``data`` with every string (keys too) valid Unicode: undecodable bytes of a path as
    ``\\xNN``, other lone surrogates as ``\\uNNNN``. JSON escapes the controls itself."""
    if isinstance(data, str):
        return _no_surrogates(data)
    if isinstance(data, dict):
        return {
            (_no_surrogates(k) if isinstance(k, str) else k): json_safe(v) for k, v in data.items()
        }
    if isinstance(data, list | tuple):
        return [json_safe(v) for v in data]
    return data


def emit_json(data: Any) -> None:
    """Print ``data`` as one JSON document that is valid UTF-8 however it is decoded."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str)
    if "\\ud" in text:  # a surrogate somewhere (a lone one, or half of a pair): clean up
        text = json.dumps(json_safe(data), indent=2, sort_keys=False, default=str)
    click.echo(text)


def colour() -> bool:
    return sys.stdout.isatty()


def render_diagnostics_text(diags: Sequence[Diagnostic], err: bool = False) -> None:
    """One ``path:line:col: severity[CODE]: message`` line per diagnostic (stderr: ``err``)."""
    for d in diags:
        sev = str(d.severity)
        if colour() and not err:
            sev = click.style(
                sev, fg="red" if d.severity is Severity.ERROR else "yellow", bold=True
            )
        click.echo(
            f"{printable(d.path)}:{d.line}:{d.column}: {sev}[{d.code}]: {printable(d.message)}",
            err=err,
        )
        if d.hint:
            click.echo(f"  hint: {printable(d.hint)}", err=err)


def _gh_escape(text: str, prop: bool = False) -> str:
    """A workflow command's data (or property, ``prop``): line breaks percent-encoded as
    GitHub decodes them, then the other controls and undecodable bytes made printable."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return printable(text)


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


def parse_instant(text: str, option: str) -> datetime:
    """An ISO-8601 instant with its UTC offset (``Z`` allowed)."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO-8601 instant (e.g. 2026-03-23T02:00:00Z)", param_hint=option
        ) from None
    if t.tzinfo is None or t.utcoffset() is None:
        raise click.BadParameter(
            f"{text!r} has no UTC offset: write it with Z or an offset such as +01:00",
            param_hint=option,
        )
    return t
