"""HTML rendering of the dashboard: the one Jinja2 environment (autoescape on), the filters
that show instants with their offsets and as "in 3 h", state colours, and the timeline SVG.

Every value from Git, the state or a caller reaches a page through Jinja's autoescaping; the
SVG is built here with :func:`markupsafe.escape` on every text. Pure (formats the values it is
given); called by :mod:`reconciler.api.dashboard.routes`. The only Jinja2 user of the product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

HERE = Path(__file__).parent

STATE_TONE = {
    "active": "ok",
    "paused": "muted",
    "awaiting-approval": "warn",
    "denied": "bad",
    "disabled": "bad",
    "system": "info",
}
STATUS_TONE = {
    "succeeded": "ok",
    "failed": "bad",
    "timed-out": "bad",
    "abandoned": "bad",
    "cancelled": "muted",
    "skipped": "muted",
    "queued": "info",
    "running": "info",
    "drifted": "warn",
    "in-sync": "ok",
    "unknown": "muted",
    "run": "ok",
    "ok": "ok",
    "changed": "warn",
    "unreachable": "bad",
}


def instant(value: datetime | str | None) -> str:
    """``2025-03-30 02:30:00 +02:00``: every instant on a page carries its offset."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    text = value.isoformat(sep=" ", timespec="seconds")
    return text[:-6] + " " + text[-6:] if value.utcoffset() is not None else text


def iso(value: datetime | str) -> str:
    return value if isinstance(value, str) else value.isoformat()


def relative(value: datetime | str | None, now: datetime) -> str:
    """``in 3 h``, ``5 min ago``, ``now``: the distance from ``now``, rounded down."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    seconds = (value - now).total_seconds()
    ahead = seconds >= 0
    s = abs(seconds)
    if s < 1:
        return "now"
    if s < 60:
        text = f"{int(s)} s"
    elif s < 3600:
        text = f"{int(s // 60)} min"
    elif s < 86400:
        text = f"{int(s // 3600)} h"
    else:
        text = f"{int(s // 86400)} d"
    return f"in {text}" if ahead else f"{text} ago"


def tone(value: str | None) -> str:
    return STATE_TONE.get(value or "", STATUS_TONE.get(value or "", "muted"))


def short(revision: str | None) -> str:
    return revision[:12] if revision else "-"


def diagnostic_line(d: Mapping[str, Any]) -> str:
    """``path:line:col: error[CODE]: message``, as ``validate`` prints it."""
    where = str(d.get("path") or "?")
    if d.get("line"):
        where += f":{d['line']}"
        if d.get("column"):
            where += f":{d['column']}"
    return f"{where}: {d.get('severity', 'error')}[{d.get('code', '')}]: {d.get('message', '')}"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["instant"] = instant
    env.filters["iso"] = iso
    env.filters["tone"] = tone
    env.filters["short"] = short
    env.filters["diagnostic"] = diagnostic_line
    env.globals["relative"] = relative
    return env


# --------------------------------------------------------------------------------------------
# the timeline


@dataclass(frozen=True)
class Lane:
    """One row of the timeline: a schedule and its fire times."""

    schedule: str
    fires: Sequence[datetime]
    capped: bool = False


_LABEL_W = 210
_WIDTH = 1180
_ROW_H = 24
_AXIS_H = 34


def _ticks(start: datetime, end: datetime, zone: ZoneInfo) -> list[tuple[datetime, str]]:
    """Axis ticks in ``zone``: every 3 h over a day, every day (at local midnight) over more."""
    span = end - start
    local = start.astimezone(zone)
    out: list[tuple[datetime, str]] = []
    if span <= timedelta(days=1, hours=1):
        t = local.replace(minute=0, second=0, microsecond=0)
        for _ in range(4):
            if t > local and t.hour % 3 == 0:
                break
            t = (t + timedelta(hours=1)).astimezone(zone)
        for _ in range(20):
            if t >= end:
                break
            out.append((t, t.strftime("%a %d" if t.hour == 0 else "%H:%M")))
            t = (t + timedelta(hours=3)).astimezone(zone)
    else:
        t = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        for _ in range(40):
            if t >= end:
                break
            out.append((t, t.strftime("%a %d %b")))
            t = t + timedelta(days=1)
    return out


def timeline_svg(
    lanes: Sequence[Lane], start: datetime, end: datetime, zone_name: str, link: str = "/schedules/"
) -> Markup:
    """An inline SVG: one row per schedule, a mark per fire (marks closer than a pixel are
    one), a labelled axis in ``zone_name`` and a line at ``start`` (now)."""
    zone = ZoneInfo(zone_name)
    plot = _WIDTH - _LABEL_W - 10
    total = (end - start).total_seconds()
    height = _AXIS_H + max(1, len(lanes)) * _ROW_H + 6

    def x(t: datetime) -> float:
        return _LABEL_W + plot * (t - start).total_seconds() / total

    parts = [
        f'<svg class="timeline" viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" '
        f'height="{height}" role="img" aria-label="fire times from {escape(instant(start))} '
        f'to {escape(instant(end))}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in range(len(lanes)):
        if i % 2 == 0:
            y = _AXIS_H + i * _ROW_H
            parts.append(
                f'<rect class="band" x="0" y="{y}" width="{_WIDTH}" height="{_ROW_H}"></rect>'
            )
    for t, label in _ticks(start, end, zone):
        xt = x(t)
        parts.append(
            f'<line class="tick" x1="{xt:.1f}" y1="{_AXIS_H - 6}" x2="{xt:.1f}" '
            f'y2="{height}"></line>'
            f'<text class="axis" x="{xt:.1f}" y="{_AXIS_H - 12}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    if not lanes:
        parts.append(
            f'<text class="empty" x="{_LABEL_W}" y="{_AXIS_H + 16}">no fires in this window</text>'
        )
    for i, lane in enumerate(lanes):
        y = _AXIS_H + i * _ROW_H
        name = escape(lane.schedule)
        label = lane.schedule if len(lane.schedule) <= 26 else lane.schedule[:25] + "…"
        parts.append(
            f'<a href="{escape(link)}{name}"><text class="lane" x="8" y="{y + 16}">'
            f"{escape(label)}<title>{name}</title></text></a>"
        )
        seen: set[int] = set()
        for f in lane.fires:
            px = int(x(f))
            if px in seen:
                continue
            seen.add(px)
            parts.append(
                f'<rect class="fire" x="{px - 1}" y="{y + 5}" width="3" height="{_ROW_H - 10}">'
                f"<title>{name} {escape(instant(f))}</title></rect>"
            )
        if lane.capped and len(lane.fires) > 1:
            # the rest of the window: one band, as dense as the fires drawn before it
            every = (lane.fires[-1] - lane.fires[0]) / (len(lane.fires) - 1)
            x0, x1 = x(lane.fires[-1]), _WIDTH - 10
            parts.append(
                f'<rect class="dense" x="{x0:.1f}" y="{y + 5}" width="{max(0.0, x1 - x0):.1f}" '
                f'height="{_ROW_H - 10}"><title>{name} keeps firing about every '
                f"{escape(_span(every))}</title></rect>"
            )
    parts.append(
        f'<line class="now" x1="{_LABEL_W}" y1="{_AXIS_H - 6}" x2="{_LABEL_W}" y2="{height}">'
        "</line></svg>"
    )
    return Markup("".join(parts))


def _span(d: timedelta) -> str:
    s = d.total_seconds()
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def utc_now_label(now: datetime) -> str:
    return instant(now.astimezone(UTC))
