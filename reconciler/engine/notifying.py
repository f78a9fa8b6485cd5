"""Notifications: which events go to which channels, and the outbox sender loop.

Who calls it: the run lifecycle (:func:`outcome_notifications`, from
:func:`reconciler.engine.runs._record`, written by ``record_outcome`` in the run's own
transaction), apply (:func:`waiting_notifications`, written by ``apply_changes``), reconciling
(:func:`stalled_notifications`, written with the attempt), firing (:func:`notify_fired`: missed
slots and disabled schedules), approvals (:func:`approval_events`,
:func:`notify_approval_decision`), the daemon's housekeeping (:func:`notify_reaped`) and the
daemon's sender thread (:class:`Sender`).

Which channels hear an event: the schedule's ``notify`` list when it has entries, else its
template's ``notify`` (the template's default for every schedule of it); a run without a
schedule uses its template's. Each entry names a channel and its events (``on``, default
``failure``). The stalled event has no schedule: every channel that some applied schedule or
template lists for ``stalled`` hears it, once.

Events and when they are written:

``success``
    a run ``succeeded``.
``failure``
    a run ``failed``, ``timed-out`` or was ``abandoned``. A ``cancelled`` run is not a failure
    (someone asked for it; a drain's cancel is logged) and notifies nothing; neither does a
    ``skipped`` one.
``drift``
    a configuration run found a server drifted and its drift (a fingerprint of server, tasks
    and diffs) differs from the last one notified for (schedule or template, server); a
    server found in sync resets it, so drifting again notifies again.
``approval``
    ``waiting``: a schedule applied in ``awaiting-approval``; ``approved`` / ``denied``: a
    decision (:func:`notify_approval_decision`).
``missed``
    slots skipped by misfire: one message per schedule and firing pass, which after an outage
    is one per outage (the first pass accounts for all of its slots).
``disabled``
    the firing loop disabled a schedule (its owner lost ``run``).
``stalled``
    a commit failed validation: once per invalid revision (not on every pass, not once per
    replica: a mark in the store decides).

Delivery is at least once, and exactly once per delivery id for a receiver that dedupes on
``X-Reconciler-Delivery``: a sender that dies after the POST but before marking it sent
leaves its claim to expire, and the row goes out again with the same delivery id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import ssl
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.clock import Clock
from reconciler.errors import ReconcilerError, StateCorrupt, StateError
from reconciler.model.common import EnvOrFile, NotifyRule
from reconciler.model.documents import Channel
from reconciler.notifiers import DeliveryError, messages
from reconciler.stores.base import (
    DriftRecord,
    FireBatch,
    FireResult,
    NotifyEventName,
    NotifyMark,
    OutboxRecord,
    OutboxWrite,
    RunRecord,
    StateStore,
)

if TYPE_CHECKING:
    from reconciler.engine.firing import Disable
    from reconciler.planning.plan import Plan

log = logging.getLogger("reconciler.notify")

#: Delivery attempts before a notification is ``failed``.
MAX_ATTEMPTS = 6
#: The first retry waits up to this many seconds; each next one up to 4 times longer.
BACKOFF_FIRST = 2.0
#: No retry waits longer than this.
BACKOFF_MAX = 300.0
#: How long a sender's claim on a row holds (longer than one delivery's timeout).
CLAIM_SECONDS = 30.0
DELIVERY_TIMEOUT = 10.0

FAILURE_STATUSES = frozenset({"failed", "timed-out", "abandoned"})

Rules = list[tuple[str, frozenset[str]]]
"""(channel, events) of one ``notify`` list."""


# --------------------------------------------------------------------------------------------
# who hears what


def _rules_of(body: str | None) -> Rules:
    """The ``notify`` entries of a stored document body (raw JSON: cheap, no validation)."""
    return _rules_in(_spec_of(body).get("notify"))


def _spec_of(body: str | None) -> dict[str, Any]:
    """The ``spec`` of a stored document body ({} when there is none or it is not JSON)."""
    if not body:
        return {}
    try:
        spec = json.loads(body).get("spec")
    except (ValueError, AttributeError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _rules_in(notify: Any) -> Rules:
    """The rules of a ``notify`` value: its entries with a channel (``on`` defaults to
    failure)."""
    out: Rules = []
    for entry in notify if isinstance(notify, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("channel"), str):
            on = entry.get("on")
            out.append((entry["channel"], frozenset(on if isinstance(on, list) else ["failure"])))
    return out


def rules_for(schedule_body: str | None, template_body: str | None) -> Rules:
    """The schedule's ``notify`` when it has entries, else the template's."""
    own = _rules_of(schedule_body)
    return own if own else _rules_of(template_body)


def template_rules(notify: Sequence[NotifyRule]) -> Rules:
    """The rules of a parsed template's (or schedule's) ``notify`` list."""
    return [(r.channel, frozenset(r.on)) for r in notify]


def channels_for(rules: Rules, event: str) -> list[str]:
    """The channels of ``rules`` that listen for ``event``, each once, sorted."""
    return sorted({channel for channel, on in rules if event in on})


def stored_rules(store: StateStore, schedule: str | None, template: str | None) -> Rules:
    """The rules that apply to a schedule (or a template's run without one), as applied."""
    srec = store.get_object("Schedule", schedule) if schedule else None
    own = _rules_of(srec.body if srec else None)
    if own:
        return own
    if template is None and srec is not None:
        template = (json.loads(srec.body).get("spec") or {}).get("template")
    trec = store.get_object("JobTemplate", template) if template else None
    return _rules_of(trec.body if trec else None)


def new_rows(
    event: NotifyEventName,
    channels: Iterable[str],
    *,
    schedule: str | None,
    template: str | None,
    run: RunRecord | None,
    detail: Mapping[str, Any],
    mark: str | None = None,
) -> list[OutboxWrite]:
    """One outbox row per channel, each with a new delivery id."""
    from reconciler.engine.running import run_json

    channels = list(channels)
    if not channels:
        return []
    body = messages.payload(
        event, schedule, template, None if run is None else run_json(run), detail
    )
    return [
        OutboxWrite(
            delivery_id=str(uuid.uuid4()),
            event=event,
            channel=c,
            payload=body,
            schedule=schedule,
            template=template,
            run_id=None if run is None else run.id,
            mark=mark,
        )
        for c in channels
    ]


# --------------------------------------------------------------------------------------------
# events


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def drift_fingerprint(server: str, details: Mapping[str, Any]) -> str:
    """What says that a server's drift changed: its name and each drifted task with its diff."""
    tasks = [
        (t.get("task"), t.get("diff")) for t in details.get("tasks") or [] if isinstance(t, dict)
    ]
    return _digest([server, tasks])


def _drift_detail(d: DriftRecord) -> dict[str, Any]:
    tasks = []
    for t in d.details.get("tasks") or []:
        if isinstance(t, dict):
            hidden = bool(t.get("hidden"))
            tasks.append(
                {"task": t.get("task"), "diff": None if hidden else t.get("diff"), "hidden": hidden}
            )
    return {
        "server": d.server,
        "state": d.state,
        "outcome": d.details.get("outcome"),
        "tasks": tasks,
    }


def outcome_notifications(
    store: StateStore,
    final: RunRecord,
    drift: Sequence[DriftRecord],
    rules: Rules | None = None,
) -> tuple[list[OutboxWrite], list[NotifyMark]]:
    """The outbox rows and marks of a run's end (``final`` is the run as it will be
    recorded): success or failure, and drift that changed. Nothing when no rule listens.
    ``rules`` when the caller has them (read when the run started), else read here."""
    if rules is None:
        rules = stored_rules(store, final.schedule, final.template)
    if not rules:
        return [], []
    rows: list[OutboxWrite] = []
    marks: list[NotifyMark] = []
    event: NotifyEventName | None = None
    if final.status == "succeeded":
        event = "success"
    elif final.status in FAILURE_STATUSES:
        event = "failure"
    if event is not None:
        detail = {"status": final.status, "message": final.message}
        rows += new_rows(
            event,
            channels_for(rules, event),
            schedule=final.schedule,
            template=final.template,
            run=final,
            detail=detail,
        )
    drift_channels = channels_for(rules, "drift")
    if drift_channels:
        owner = f"schedule:{final.schedule}" if final.schedule else f"template:{final.template}"
        for d in drift:
            key = f"drift:{owner}:{d.server}"
            found = d.details.get("outcome")  # in-sync, fixed, found, still-present, unknown
            if found == "in-sync" or (found is None and d.state == "in-sync"):
                marks.append(NotifyMark(key, "in-sync"))
            elif found in ("fixed", "found", "still-present") or d.state == "drifted":
                marks.append(NotifyMark(key, drift_fingerprint(d.server, d.details)))
                rows += new_rows(
                    "drift",
                    drift_channels,
                    schedule=final.schedule,
                    template=final.template,
                    run=final,
                    detail=_drift_detail(d),
                    mark=key,
                )
    return rows, marks


def final_record(
    run: RunRecord, status: str, message: str | None, hosts: Sequence[Any], now: datetime
) -> RunRecord:
    """The run as ``record_outcome`` will leave it (for the payload, before it is written)."""
    return dataclasses.replace(
        run,
        status=status,  # type: ignore[arg-type]
        message=message if message is not None else run.message,
        finished_at=now,
        lease_expires=None,
        hosts=tuple(hosts) if hosts else run.hosts,
    )


def notify_reaped(store: StateStore, run_ids: Sequence[int], now: datetime) -> int:
    """Failure notifications for runs the reaper marked ``abandoned`` (written right after the
    reap, in a transaction of their own). Returns how many rows were written."""
    rows: list[OutboxWrite] = []
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run is None or run.status != "abandoned":
            continue
        r, _ = outcome_notifications(store, run, ())
        rows += r
    return store.write_notifications(rows, (), now) if rows else 0


def waiting_notifications(store: StateStore, plan: Plan) -> list[OutboxWrite]:
    """``approval`` (waiting) rows for the schedules that ``plan`` writes in
    ``awaiting-approval`` (new content that needs approval); ``apply_changes`` writes them."""
    waiting = [
        c
        for c in plan.changes
        if c.kind == "Schedule"
        and c.action in ("create", "update")
        and c.state == "awaiting-approval"
    ]
    if not waiting:
        return []
    templates = {c.name: c.body for c in plan.changes if c.kind == "JobTemplate" and c.body}
    rows: list[OutboxWrite] = []
    for c in waiting:
        spec = (json.loads(c.body or "{}").get("spec")) or {}
        template = spec.get("template")
        tbody = templates.get(template) if template else None
        if tbody is None and template:
            rec = store.get_object("JobTemplate", template)
            tbody = rec.body if rec else None
        rules = rules_for(c.body, tbody)
        rows += new_rows(
            "approval",
            channels_for(rules, "approval"),
            schedule=c.name,
            template=template,
            run=None,
            detail={
                "state": "waiting",
                "content_hash": c.content_hash,
                "revision": plan.revision,
                "reason": c.state_reason,
            },
        )
    return rows


def approval_events(
    store: StateStore,
    schedule: str,
    state: str,
    user: str | None,
    detail: Mapping[str, Any] | None = None,
) -> list[OutboxWrite]:
    """``approval`` rows for ``schedule``: ``state`` is ``waiting``, ``approved`` or
    ``denied``; ``user`` who decided. The approvals code passes them to the store write of
    the decision (same transaction), or calls :func:`notify_approval_decision`."""
    rules = stored_rules(store, schedule, None)
    rec = store.get_object("Schedule", schedule)
    template = (json.loads(rec.body).get("spec") or {}).get("template") if rec else None
    return new_rows(
        "approval",
        channels_for(rules, "approval"),
        schedule=schedule,
        template=template,
        run=None,
        detail={"state": state, "user": user, **(detail or {})},
    )


def notify_approval_decision(
    store: StateStore, schedule: str, verdict: str, user: str, now: datetime
) -> int:
    """Write the ``approval`` notification of a decision (``verdict`` ``approve`` or
    ``deny``) made by ``user``; how many rows were written."""
    state = "approved" if verdict == "approve" else "denied"
    rows = approval_events(store, schedule, state, user)
    return store.write_notifications(rows, (), now) if rows else 0


def _schedule_rules(store: StateStore, names: Sequence[str]) -> dict[str, tuple[Rules, str | None]]:
    """(rules, template) of each of ``names``, as applied: their ``notify`` and template taken
    out of their bodies by the database a few hundred per query (a recovery after an outage
    reports thousands of schedules), the templates read once, never a round trip per
    schedule."""
    wanted = sorted(set(names))
    try:
        found = store.schedule_notify(wanted)
    except StateCorrupt:  # PostgreSQL: a body that is not JSON failed the query
        found = {}
        for name in wanted:  # one by one: a damaged body has no rules, as on SQLite
            try:
                rec = store.get_object("Schedule", name)
            except StateCorrupt:
                continue
            spec = _spec_of(rec.body if rec else None)
            template = spec.get("template")
            found[name] = (spec.get("notify"), template if isinstance(template, str) else None)
    templates: dict[str, Rules] | None = None
    out: dict[str, tuple[Rules, str | None]] = {}
    for name in wanted:
        notify, template = found.get(name, (None, None))
        own = _rules_in(notify)
        if not own and template is not None:
            if templates is None:
                templates = {r.name: _rules_of(r.body) for r in store.list_objects("JobTemplate")}
            own = templates.get(template, [])
        out[name] = (own, template)
    return out


def missed_events(
    store: StateStore, batches: Sequence[FireBatch], results: Sequence[FireResult]
) -> list[OutboxWrite]:
    """``missed`` rows: one per schedule whose batch (recorded: ``ok``) skipped slots by
    misfire, with how many and the range."""
    rows: list[OutboxWrite] = []
    missed = [
        (batch, res)
        for batch, res in zip(batches, results, strict=True)
        if res.ok and any(e.run is None and e.skip_reason == "misfire" for e in batch.entries)
    ]
    if not missed:
        return rows
    looked_up = _schedule_rules(store, [b.schedule for b, _ in missed])
    for batch, res in missed:
        skipped = [e for e in batch.entries if e.run is None and e.skip_reason == "misfire"]
        count = sum(e.count for e in skipped)
        first = skipped[0].slot
        last = max((e.until or e.slot) for e in skipped)
        caught_up = [r.id for r in res.runs if r.trigger == "catch-up"]
        rules, template = looked_up.get(batch.schedule, ([], None))
        channels = channels_for(rules, "missed")
        if not channels:
            continue
        rows += new_rows(
            "missed",
            channels,
            schedule=batch.schedule,
            template=template,
            run=None,
            detail={
                "count": count,
                "first": first.isoformat(),
                "last": last.isoformat(),
                "caught_up_runs": caught_up,
                "reason": skipped[0].detail,
            },
        )
    return rows


def disabled_events(store: StateStore, disables: Sequence[Disable]) -> list[OutboxWrite]:
    """``disabled`` rows for the schedules the firing loop disabled (owner invalid)."""
    rows: list[OutboxWrite] = []
    for d in disables:
        rows += new_rows(
            "disabled",
            channels_for(stored_rules(store, d.schedule, None), "disabled"),
            schedule=d.schedule,
            template=_template_of(store, d.schedule),
            run=None,
            detail={"reason": d.reason},
        )
    return rows


def notify_fired(
    store: StateStore,
    batches: Sequence[FireBatch],
    results: Sequence[FireResult],
    disables: Sequence[Disable],
    now: datetime,
) -> int:
    """Write the ``missed`` and ``disabled`` notifications of one firing pass (right after
    it is recorded). Never raises a state error into the firing loop: a failure is logged."""
    if not disables and not any(
        e.skip_reason == "misfire" for b in batches for e in b.entries if e.run is None
    ):
        return 0
    try:
        if not store.list_object_heads("Channel"):  # nowhere to send: no rule is read
            return 0
        rows = missed_events(store, batches, results) + disabled_events(store, disables)
        return store.write_notifications(rows, (), now) if rows else 0
    except ReconcilerError as e:
        log.warning("cannot write the notifications of a firing pass: %s", e)
        return 0


def _template_of(store: StateStore, schedule: str) -> str | None:
    rec = store.get_object("Schedule", schedule)
    if rec is None:
        return None
    template = (json.loads(rec.body).get("spec") or {}).get("template")
    return template if isinstance(template, str) else None


def stalled_notifications(
    store: StateStore,
    revision: str | None,
    message: str,
    diagnostics: Sequence[Mapping[str, Any]],
) -> tuple[list[OutboxWrite], list[NotifyMark]]:
    """``stalled`` rows for every channel that an applied schedule or template lists for
    ``stalled``, gated by the mark ``stalled`` = ``revision``: written once per invalid
    revision, whichever replica and pass finds it first."""
    channels: set[str] = set()
    for kind in ("JobTemplate", "Schedule"):
        for rec in store.list_objects(kind):
            channels.update(channels_for(_rules_of(rec.body), "stalled"))
    if not channels:
        return [], []
    detail = {
        "revision": revision,
        "message": message,
        "diagnostics": [dict(d) for d in diagnostics[:50]],
    }
    rows = new_rows(
        "stalled",
        sorted(channels),
        schedule=None,
        template=None,
        run=None,
        detail=detail,
        mark="stalled",
    )
    return rows, [NotifyMark("stalled", revision or "")]


# --------------------------------------------------------------------------------------------
# the sender


def backoff(attempt: int, rng: random.Random, first: float, cap: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): full jitter, a uniform draw
    in [0, min(cap, first * 4 ** (attempt - 1))] (up to 2, 8, 32, 128 and 300 s by default)."""
    return rng.uniform(0.0, min(cap, first * 4 ** (attempt - 1)))


def read_secret(ref: EnvOrFile) -> str:
    """A channel's ``secretFrom`` / ``userFrom`` / ``passwordFrom``, read at send time."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise DeliveryError(f"the environment variable {ref.env} is not set")
        return value
    assert ref.file is not None
    try:
        return Path(ref.file).read_text(encoding="utf-8").rstrip("\n")
    except OSError as e:
        raise DeliveryError(f"cannot read the secret file {ref.file}: {e.strerror}") from None


class Sender:
    """The outbox sender of one replica: claims due rows, delivers them, marks them sent or
    schedules the next attempt (:func:`backoff`), ``failed`` after ``attempts``."""

    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        claimer: str,
        *,
        attempts: int = MAX_ATTEMPTS,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        claim_seconds: float = CLAIM_SECONDS,
        timeout: float = DELIVERY_TIMEOUT,
        batch: int = 10,
        idle: float = 1.0,
        tls_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.claimer = claimer
        self.attempts = attempts
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.claim_seconds = claim_seconds
        self.timeout = timeout
        self.batch = batch
        self.idle = idle
        self.tls_context = tls_context
        self.rng = rng or random.Random()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.sent = 0
        self.failed = 0

    def poke(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def send_due(self) -> int:
        """Claim and deliver what is due now; how many rows were claimed."""
        rows = self.store.claim_notifications(
            self.claimer, self.batch, self.claim_seconds, self.clock.now()
        )
        for row in rows:
            if self.stopping.is_set():
                break  # claimed but not sent: the claim expires and another attempt comes
            self._attempt(row)
        return len(rows)

    def _attempt(self, row: OutboxRecord) -> None:
        try:
            self.deliver(row)
        except DeliveryError as e:
            self._failed(row, str(e), e.permanent)
            return
        except ReconcilerError as e:  # the channel cannot be read from the state
            self._failed(row, str(e), False)
            return
        except ValueError as e:  # an applied channel this version cannot read
            self._failed(row, f'channel "{row.channel}" cannot be read: {e}'[:300], True)
            return
        self.store.mark_notification_sent(row.id, self.claimer, self.clock.now())
        self.sent += 1

    def _failed(self, row: OutboxRecord, error: str, permanent: bool) -> None:
        now = self.clock.now()
        give_up = permanent or row.attempts >= self.attempts
        nxt = None
        if not give_up:
            wait = backoff(row.attempts, self.rng, self.backoff_first, self.backoff_max)
            nxt = now + timedelta(seconds=wait)
        self.store.retry_notification(row.id, self.claimer, error, nxt, now)
        if give_up:
            self.failed += 1
            log.error(
                "notification %s (%s to channel %s) failed after %d attempt(s): %s",
                row.delivery_id,
                row.event,
                row.channel,
                row.attempts,
                error,
            )
        else:
            # the first failure is a warning; the retries of it are routine until one gives up
            log.log(
                logging.WARNING if row.attempts <= 1 else logging.INFO,
                "notification %s (%s to channel %s), attempt %d failed: %s; next at %s",
                row.delivery_id,
                row.event,
                row.channel,
                row.attempts,
                error,
                nxt.isoformat() if nxt else "-",
            )

    def deliver(self, row: OutboxRecord) -> None:
        """One attempt: the channel as applied now, the body signed as sent."""
        from reconciler.notifiers import email, webhook

        rec = self.store.get_object("Channel", row.channel)
        if rec is None:
            raise DeliveryError(f'channel "{row.channel}" is not applied', permanent=True)
        spec = Channel.model_validate_json(rec.body).spec
        now = self.clock.now()
        if spec.webhook is not None:
            hook = spec.webhook
            body = messages.webhook_body(row.payload, row.delivery_id, now)
            headers = dict(hook.headers)
            headers[messages.EVENT_HEADER] = row.event
            headers[messages.DELIVERY_HEADER] = row.delivery_id
            if hook.secret_from is not None:
                secret = read_secret(hook.secret_from)
                headers[messages.SIGNATURE_HEADER] = messages.signature(secret, body)
            webhook.post(hook.url, body, headers, timeout=self.timeout, context=self.tls_context)
            return
        assert spec.email is not None
        mail = spec.email
        subject, text = messages.email_text(row.payload, row.delivery_id, now)
        smtp = mail.smtp
        email.send(
            host=smtp.host,
            port=smtp.port,
            starttls=smtp.starttls,
            sender=mail.from_,
            to=mail.to,
            subject=subject,
            text=text,
            user=read_secret(smtp.user_from) if smtp.user_from else None,
            password=read_secret(smtp.password_from) if smtp.password_from else None,
            message_id=row.delivery_id,
            timeout=self.timeout,
            context=self.tls_context,
        )

    def run_forever(self, on_error: Callable[[Exception], None]) -> None:
        """Send what is due, sleep ``idle`` (or until poked), repeat, until :meth:`stop`."""
        while not self.stopping.is_set():
            try:
                busy = self.send_due()
            except StateError as e:
                on_error(e)
                busy = 0
            if busy < self.batch:
                self.wake.wait(self.idle)
                self.wake.clear()
