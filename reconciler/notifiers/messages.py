"""Rendering of notifications: the webhook body and its signature, the e-mail subject and
text. Pure: every value is an argument (the send time included), nothing is read or written.

Who calls it: :mod:`reconciler.engine.notifying` (the sender) and tests, which verify
signatures with :func:`signature` the way a receiver does.

The stored payload is ``{"event", "schedule", "template", "run", "detail"}`` (see
:func:`payload`); :func:`webhook_body` adds ``delivery_id`` and ``sent_at`` when it is sent, so
the body of each attempt is signed as it is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

#: The headers every webhook POST carries (besides the channel's own ``headers``).
EVENT_HEADER = "X-Reconciler-Event"
DELIVERY_HEADER = "X-Reconciler-Delivery"
SIGNATURE_HEADER = "X-Reconciler-Signature-256"


def payload(
    event: str,
    schedule: str | None,
    template: str | None,
    run: Mapping[str, Any] | None,
    detail: Mapping[str, Any],
) -> dict[str, Any]:
    """The outbox payload of one notification (the body without its delivery id and time)."""
    return {
        "event": event,
        "schedule": schedule,
        "template": template,
        "run": None if run is None else dict(run),
        "detail": dict(detail),
    }


def webhook_body(stored: Mapping[str, Any], delivery_id: str, sent_at: datetime) -> bytes:
    """The exact bytes POSTed (and signed): the contract's keys, in a stable order."""
    body = {
        "event": stored.get("event"),
        "schedule": stored.get("schedule"),
        "template": stored.get("template"),
        "run": stored.get("run"),
        "delivery_id": delivery_id,
        "sent_at": sent_at.isoformat(),
        "detail": stored.get("detail") or {},
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of body keyed by secret>``: the signature header's value. A
    receiver computes the same and compares with :func:`hmac.compare_digest`."""
    mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` under ``secret`` (constant time)."""
    if not header:
        return False
    return hmac.compare_digest(signature(secret, body), header)


def headline(stored: Mapping[str, Any]) -> str:
    """One line that says what happened (the e-mail subject)."""
    event = str(stored.get("event"))
    name = stored.get("schedule") or stored.get("template") or "reconciler"
    run = stored.get("run") or {}
    detail = stored.get("detail") or {}
    if event in ("success", "failure") and run:
        return f"[reconciler] {name}: run {run.get('id')} {run.get('status')}"
    if event == "drift":
        return f"[reconciler] {name}: drift on {detail.get('server')}"
    if event == "approval":
        return f"[reconciler] {name}: approval {detail.get('state')}"
    if event == "missed":
        return f"[reconciler] {name}: {detail.get('count')} slot(s) missed"
    if event == "disabled":
        return f"[reconciler] {name}: disabled"
    if event == "stalled":
        revision = str(detail.get("revision") or "")[:12]
        return f"[reconciler] stalled: commit {revision} fails validation"
    return f"[reconciler] {name}: {event}"


def email_text(stored: Mapping[str, Any], delivery_id: str, sent_at: datetime) -> tuple[str, str]:
    """(subject, plain-text body) of the e-mail for one notification."""
    lines = [headline(stored).removeprefix("[reconciler] "), ""]
    for key in ("event", "schedule", "template"):
        if stored.get(key) is not None:
            lines.append(f"{key}: {stored[key]}")
    run = stored.get("run")
    if run:
        lines.append(f"run: {run.get('id')} ({run.get('status')}, trigger {run.get('trigger')})")
        if run.get("message"):
            lines.append(f"message: {run['message']}")
        for server, h in sorted((run.get("hosts") or {}).items()):
            counts = ", ".join(
                f"{k} {h.get(k)}" for k in ("ok", "changed", "failed", "unreachable", "drifted")
            )
            lines.append(f"  {server}: {h.get('status')} ({counts})")
    detail = stored.get("detail") or {}
    if detail:
        lines.append("")
        lines.append("detail:")
        lines.append(json.dumps(detail, indent=2, sort_keys=True, ensure_ascii=False))
    lines += ["", f"delivery: {delivery_id}", f"sent: {sent_at.isoformat()}"]
    return headline(stored), "\n".join(lines) + "\n"
