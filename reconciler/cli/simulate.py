"""``reconciler simulate``: the slot ledger ``serve`` would write over a range of time.

Parses the range, the outages and the run time, loads REPO (its working tree by default, as
``validate`` does; ``--rev`` for a commit) and renders what
:func:`reconciler.engine.simulating.simulate` found. Nothing is run and no state is touched.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta

import click

from reconciler.cli.common import (
    diagnostics_json,
    emit_json,
    format_option,
    json_safe,
    parse_instant,
    plural,
    printable,
    render_diagnostics_text,
)
from reconciler.engine.simulating import Outage, SimEntry, Simulation


def parse_duration_option(text: str, option: str) -> timedelta:
    from reconciler.model.common import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=option) from None


def parse_outage(text: str) -> Outage:
    """``FROM/TO`` (two instants) or ``FROM/DURATION``, as ISO-8601 intervals are written."""
    first, sep, second = text.partition("/")
    if not sep:
        raise click.BadParameter(
            f"{text!r}: write FROM/TO or FROM/DURATION, e.g. 2026-03-24T10:00Z/2h",
            param_hint="--down",
        )
    start = parse_instant(first, "--down")
    if second.strip()[:1].isdigit() and "-" not in second and ":" not in second:
        return Outage(start, start + parse_duration_option(second, "--down"))
    return Outage(start, parse_instant(second, "--down"))


@click.command()
@click.argument("repo", default=".", required=False)
@click.option(
    "--rev",
    default=None,
    metavar="REV",
    help="Simulate this revision (default: the working tree, as validate).",
)
@click.option(
    "--from", "start", required=True, metavar="INSTANT", help="REPO is applied at this instant."
)
@click.option(
    "--to", "end", required=True, metavar="INSTANT", help="Simulate until this instant (included)."
)
@click.option(
    "--down",
    "downs",
    multiple=True,
    metavar="FROM/TO",
    help="serve is not running from FROM until TO (or FROM/DURATION); repeatable.",
)
@click.option(
    "--run-time",
    "run_time",
    default="0s",
    show_default=True,
    metavar="DURATION",
    help="How long each run takes (what overlap policies see).",
)
@format_option
def simulate(
    repo: str,
    rev: str | None,
    start: str,
    end: str,
    downs: tuple[str, ...],
    run_time: str,
    fmt: str,
) -> None:
    """Show the slot ledger serve would write for REPO from --from to --to: every fire,
    catch-up and skip with its reason, DST moves and jitter, computed by the daemon's own
    firing code under a simulated clock. Nothing runs; your state is neither read nor
    written.

    REPO is applied at --from to an empty state; each --down is an outage of serve (a stop,
    then a restart, so the misfire policies apply); each run takes --run-time.
    """
    from reconciler.engine.desired import load_repo
    from reconciler.engine.simulating import check_range
    from reconciler.engine.simulating import simulate as run_simulation

    t1, t2 = parse_instant(start, "--from"), parse_instant(end, "--to")
    outages = [parse_outage(d) for d in downs]
    took = parse_duration_option(run_time, "--run-time")
    check_range(t1, t2, outages)  # before a Git URL is fetched for nothing
    source, result = load_repo(repo, rev, "worktree", t1)
    where = source.description
    if result.desired is None:
        if fmt == "json":
            emit_json(diagnostics_json(result.diagnostics))
        else:
            render_diagnostics_text(result.diagnostics)
            click.echo(
                f"error: {printable(where)} does not validate ({result.errors} errors); "
                "nothing was simulated",
                err=True,
            )
        sys.exit(1)
    sim = run_simulation(result.desired, t1, t2, outages, took)
    for name, problem in sorted(sim.unarmed.items()):
        click.echo(
            f"warning: schedule {printable(name)} cannot fire: {printable(problem)}", err=True
        )
    if fmt == "json":
        emit_document(sim, where, result.revision)
        return
    render_text(sim, where)


def emit_document(sim: Simulation, where: str, revision: str | None) -> None:
    """The JSON document, with each slot object on one line and streamed: a range near the
    limit holds 100,000 of them, which one indented ``json.dumps`` would hold in memory many
    times over."""
    from reconciler.engine.simulating import simulation_json, slot_json

    head = json.dumps(json_safe(simulation_json(sim, where, revision, slots=False)), indent=2)
    click.echo(head[: head.rindex("}")].rstrip() + ',\n  "slots": [')
    last = len(sim.entries) - 1
    for i, s in enumerate(sim.entries):
        row = json.dumps(json_safe(slot_json(s)))
        click.echo(f"    {row}{',' if i < last else ''}")
    click.echo("  ]\n}")


def _clock(t: datetime, like: datetime) -> str:
    """``t`` in the time zone of ``like`` (a schedule's local time)."""
    return t.astimezone(like.tzinfo).isoformat()


def _run_text(s: SimEntry) -> tuple[str, str | None]:
    """What became of a slot's run, and the line that explains it (None: nothing to add)."""
    r = s.run
    what = f"run {s.entry.run_id}"
    if r is None:
        return what, None
    what += f" ({r.trigger}) {r.status}"
    if r.started_at is not None and r.started_at != s.fire_at:
        what += f", started {_clock(r.started_at, s.local_fire_at)}"
    if r.finished_at is not None and r.finished_at != r.started_at:
        what += f", ended {_clock(r.finished_at, s.local_fire_at)}"
    explain = r.trigger != "schedule" or r.status not in ("succeeded", "running")
    return what, r.message if explain else None


def render_text(sim: Simulation, where: str) -> None:
    """The ledger as a timeline: one line per entry, in the order serve records them, led by
    its fire time in the schedule's zone; serve's stops and starts and the DST changes
    between them; then a summary."""
    from reconciler.engine.simulating import offset_text
    from reconciler.model.common import format_duration

    click.echo(
        f"{printable(where)}: applied at {sim.start.isoformat()}, simulated until "
        f"{sim.end.isoformat()}, each run taking {format_duration(sim.run_time)}"
    )
    markers: list[tuple[datetime, str]] = []
    for o in sim.outages:
        markers.append((o.start, f"-- {o.start.isoformat()}  serve stops"))
        markers.append((o.end, f"-- {o.end.isoformat()}  serve starts again"))
    for t in sim.transitions:
        markers.append(
            (
                t.at,
                f"-- {t.at.isoformat()}  {t.timezone} changes from UTC"
                f"{offset_text(t.offset_before)} to UTC{offset_text(t.offset_after)}",
            )
        )
    markers.sort(key=lambda m: m[0])
    width = max((len(printable(s.entry.schedule)) for s in sim.entries), default=0)
    slots = runs = catch_up = 0
    skipped: dict[str, int] = {}
    m = 0
    # In the order serve records them: a slot missed in an outage is decided at the restart.
    timeline = sorted(sim.entries, key=lambda s: (s.entry.recorded_at, s.entry.slot))
    for s in timeline:
        while m < len(markers) and markers[m][0] <= s.entry.recorded_at:
            click.echo(markers[m][1])
            m += 1
        e = s.entry
        slots += e.count
        if e.run_id is not None:
            runs += 1
            catch_up += s.run is not None and s.run.trigger == "catch-up"
            what, detail = _run_text(s)
        else:
            reason = e.skip_reason or "skipped"
            skipped[reason] = skipped.get(reason, 0) + e.count
            what, detail = f"skipped ({reason})", e.detail
            if e.count > 1 and e.until is not None:
                what += f", {e.count} slots until {_clock(e.until, s.local_fire_at)}"
        if s.fire_at != e.slot:
            jitter = format_duration(s.fire_at - e.slot)
            what += f"  [slot {_clock(e.slot, s.local_fire_at)} + {jitter} jitter]"
        click.echo(f"{s.local_fire_at.isoformat()}  {printable(e.schedule):<{width}}  {what}")
        if detail:
            click.echo(f"    {printable(detail)}")
    for _, text in markers[m:]:
        click.echo(text)
    parts = [plural(runs, "run") + (f" ({catch_up} catch-up)" if catch_up else "")]
    if skipped:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(skipped.items()))
        parts.append(f"{sum(skipped.values())} skipped ({counts})")
    entries = plural(len(sim.entries), "ledger entry").replace("entrys", "entries")
    click.echo(f"{plural(slots, 'slot')} in {entries}: " + ", ".join(parts))
