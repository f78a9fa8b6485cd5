"""``reconciler cron explain``: what a cron expression means and when it fires next.

Imports only click at module level so that ``--help`` stays fast; the scheduling engine is
imported inside the command. This is the one place of the time engine that reads the clock
(the default ``--after`` is now).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC

import click

from reconciler.cli.common import format_option


@click.group()
def cron() -> None:
    """Explain cron expressions and their fire times."""


@cron.command("explain")
@click.argument("expr", metavar="EXPR")
@click.option(
    "--timezone",
    "tz_name",
    default="UTC",
    show_default=True,
    metavar="TZ",
    help="IANA time zone the expression is read in.",
)
@click.option(
    "--count",
    "-n",
    default=5,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="How many fire times to show.",
)
@click.option(
    "--after",
    metavar="INSTANT",
    default=None,
    help="Show fire times strictly after this ISO-8601 instant (default: now), in the years "
    "1970 to 9000. Without an offset it is a wall-clock time of --timezone.",
)
@format_option
def explain(expr: str, tz_name: str, count: int, after: str | None, fmt: str) -> None:
    """Explain EXPR: its dialect, meaning, DST rule and next fire times.

    EXPR is a 5-field Unix expression (or a macro such as @daily) or a 6/7-field Quartz
    expression (seconds first, optional year). Quote it: reconciler cron explain
    '0 15 10 ? * MON-FRI'.
    """
    from datetime import datetime

    from reconciler.model.bounds import year_problem
    from reconciler.scheduling.cron import CronSyntaxError
    from reconciler.scheduling.explain import explain_cron
    from reconciler.scheduling.zones import UnknownTimezone, get_zone

    try:
        zone = get_zone(tz_name)
    except UnknownTimezone as e:
        _fail(fmt, expr, f"--timezone: {e}")
        return
    if after is None:
        start = datetime.now(UTC)
    else:
        try:
            start = datetime.fromisoformat(after.strip().replace("Z", "+00:00"))
        except ValueError:
            _fail(
                fmt,
                expr,
                f"--after: {after!r} is not an ISO-8601 instant (like 2026-12-01T00:00:00Z)",
            )
            return
        problem = year_problem(start.year)
        if problem is not None:
            _fail(fmt, expr, f"--after: {problem}")
            return
        if start.tzinfo is None:
            start = datetime.fromtimestamp(
                zone.resolve_fixed(
                    start.year, start.month, start.day, start.hour, start.minute, start.second
                ),
                UTC,
            ).replace(microsecond=start.microsecond)
    try:
        ex = explain_cron(expr, tz_name, start, count)
    except CronSyntaxError as e:
        if fmt == "json":
            click.echo(
                json.dumps(
                    {
                        "expression": expr,
                        "error": {"message": e.message, "column": e.column, "field": e.field},
                    },
                    indent=2,
                )
            )
        else:
            caret_line = " " * (e.column - 1) + "^"
            click.echo(f"error: invalid cron expression: {e.message}", err=True)
            click.echo(f"  {expr.expandtabs(1)}", err=True)
            click.echo(f"  {caret_line} {e.field} field, column {e.column}", err=True)
        sys.exit(1)

    if fmt == "json":
        doc: dict[str, object] = {
            "expression": ex.expression,
            "dialect": ex.dialect,
            "timezone": ex.timezone,
            "description": ex.description,
            "dst_rule": ex.dst_rule,
            "dst_rule_description": ex.dst_rule_description,
            "after": ex.after.astimezone(zone.info).isoformat(),
            "next": [t.isoformat() for t in ex.next],
        }
        if ex.never:
            doc["note"] = ex.never
        click.echo(json.dumps(doc, indent=2))
        return
    fields = (
        "minute hour day-of-month month day-of-week"
        if ex.dialect == "unix"
        else "second minute hour day-of-month month day-of-week [year]"
    )
    click.echo(f"Expression:  {ex.expression}")
    click.echo(f"Dialect:     {ex.dialect} ({fields})")
    click.echo(f"Time zone:   {ex.timezone}")
    click.echo(f"Meaning:     {ex.description}")
    click.echo(f"DST rule:    {ex.dst_rule}: {ex.dst_rule_description}")
    shown_after = ex.after.astimezone(zone.info).isoformat()
    if ex.next:
        click.echo(
            f"Next {len(ex.next)} fire time{'s' if len(ex.next) != 1 else ''} after {shown_after}:"
        )
        for t in ex.next:
            click.echo(f"  {t.isoformat()}  {t.strftime('%a')}")
    elif count == 0:
        click.echo("Next:        (--count 0)")
    else:
        click.echo(f"Next:        none: {ex.never}")


def _fail(fmt: str, expr: str, message: str) -> None:
    if fmt == "json":
        click.echo(json.dumps({"expression": expr, "error": {"message": message}}, indent=2))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(1)
