"""Rendering upcoming fires as an RFC 5545 calendar (``text/calendar``). Pure.

One VEVENT per fire: a UID that is stable for (schedule, slot), so a calendar client that
refreshes the feed updates events instead of duplicating them; DTSTART in UTC with the local
time in the description; TEXT values escaped and lines folded at 75 octets with CRLF endings.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from reconciler.engine.calendar import Fire

PRODID = "-//reconciler//schedules//EN"


def _text(value: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and newlines escaped."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    value = value.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return "".join(ch for ch in value if ch >= " " or ch == "\t")


def _fold(line: str) -> str:
    """Fold a content line at 75 octets (RFC 5545 3.1), never inside a UTF-8 sequence."""
    out: list[str] = []
    current = ""
    size = 0
    for ch in line:
        n = len(ch.encode("utf-8"))
        if size + n > (75 if not out else 74):
            out.append(current)
            current, size = "", 0
        current += ch
        size += n
    out.append(current)
    return "\r\n ".join(out)


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _duration(seconds: int) -> str:
    minutes, sec = divmod(max(seconds, 60), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        "PT"
        + (f"{hours}H" if hours else "")
        + (f"{minutes}M" if minutes else "")
        + (f"{sec}S" if sec else "")
    )


def render(fires: Iterable[Fire], now: datetime, name: str = "reconciler schedules") -> str:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_text(name)}",
    ]
    stamp = _utc(now)
    for f in fires:
        local = f.fire_at.isoformat()
        detail = [f"template {f.template}", f"owner {f.owner}", f"slot {f.slot.isoformat()}"]
        detail.append(f"fires at {local}")
        if f.description:
            detail.insert(0, f.description)
        lines += [
            "BEGIN:VEVENT",
            f"UID:{_text(f.schedule)}-{_utc(f.slot)}@reconciler",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{_utc(f.fire_at)}",
            f"DURATION:{_duration(int(f.duration.total_seconds()))}",
            f"SUMMARY:{_text(f'{f.schedule} ({f.template})')}",
            f"DESCRIPTION:{_text(chr(10).join(detail))}",
            "TRANSP:TRANSPARENT",
        ]
        if f.labels:
            cats = ",".join(_text(f"{k}={v}") for k, v in sorted(f.labels.items()))
            lines.append(f"CATEGORIES:{cats}")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "".join(_fold(line) + "\r\n" for line in lines)
