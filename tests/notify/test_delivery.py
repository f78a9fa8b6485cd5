"""Delivery through the sender to a real HTTP receiver and a real SMTP server: signatures,
headers, the body of the contract, retries with one delivery id, failure after the last try,
STARTTLS and AUTH, and no secret anywhere in what is sent or stored."""

from __future__ import annotations

import email
import json
import logging
from pathlib import Path

import pytest

from reconciler.clock import ManualClock
from reconciler.engine.notifying import backoff, new_rows, notify_approval_decision
from reconciler.stores import StateStore
from reconciler.stores.base import NewRun

from .conftest import NOW, SECRET, Mailbox, Receiver, applied, fast_sender, notify_repo


def _drain(store: StateStore, clock: ManualClock, rounds: int = 10, **kw: object) -> None:
    sender = fast_sender(store, clock, **kw)  # type: ignore[arg-type]
    for _ in range(rounds):
        clock.advance(1)
        sender.send_due()


@pytest.fixture
def repo(tmp_path: Path, receiver: Receiver, mailbox: Mailbox, hook_env: None) -> Path:
    return notify_repo(tmp_path / "repo", receiver.url, {}, smtp_port=mailbox.port)


def test_a_webhook_is_signed_with_the_channel_secret_and_carries_the_contract_body(
    store: StateStore, repo: Path, receiver: Receiver
) -> None:
    applied(store, repo)
    run = store.create_run(
        NewRun(
            "ping",
            "cli",
            None,
            variables={"greeting": "hi", "token": "tok-very-secret"},
            sensitive=frozenset({"token"}),
            claim_by="w",
        ),
        NOW,
    )
    assert run is not None
    from reconciler.engine.runs import _notifications

    rows, marks = _notifications(store, run, "failed", "boom", [], [], NOW)
    assert [r.channel for r in rows] == ["hook"]
    assert store.record_outcome(run.id, "w", "failed", "boom", [], [], NOW, rows, marks)
    clock = ManualClock(NOW)
    _drain(store, clock, rounds=1)
    (got,) = receiver.got
    assert got.valid, "the receiver could not verify the signature with the channel secret"
    assert got.headers["x-reconciler-event"] == "failure"
    assert got.headers["x-reconciler-delivery"] == rows[0].delivery_id
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-team"] == "web"
    body = got.json
    assert set(body) == {"event", "schedule", "template", "run", "delivery_id", "sent_at", "detail"}
    assert (body["event"], body["template"], body["delivery_id"]) == (
        "failure",
        "ping",
        rows[0].delivery_id,
    )
    assert body["run"]["id"] == run.id and body["run"]["status"] == "failed"
    assert body["run"]["variables"]["token"] == "<sensitive>"
    assert "+00:00" in body["sent_at"]
    assert b"tok-very-secret" not in got.body and SECRET.encode() not in got.body
    assert SECRET not in json.dumps([r.payload for r in store.list_notifications()])
    assert store.notification_counts()["sent"] == 1


def test_a_receiver_that_fails_twice_gets_the_same_delivery_id_three_times(
    store: StateStore, repo: Path, receiver: Receiver
) -> None:
    applied(store, repo)
    receiver.plan = [500, 503]
    rows = new_rows("success", ["hook"], schedule=None, template="ping", run=None, detail={})
    store.write_notifications(rows, [], NOW)
    _drain(store, ManualClock(NOW), rounds=5)
    ids = receiver.delivery_ids()
    assert ids == [rows[0].delivery_id] * 3
    assert all(d.valid for d in receiver.got)
    (rec,) = store.list_notifications()
    assert (rec.status, rec.attempts) == ("sent", 3)


def test_a_delivery_gives_up_after_the_last_attempt_and_is_visible_as_failed(
    store: StateStore, repo: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    applied(store, repo)
    receiver.plan = [500] * 10
    store.write_notifications(
        new_rows("success", ["hook"], schedule=None, template="ping", run=None, detail={}),
        [],
        NOW,
    )
    with caplog.at_level(logging.DEBUG, logger="reconciler.notify"):
        _drain(store, ManualClock(NOW), rounds=10, attempts=3)
    assert len(receiver.got) == 3
    # the first failure warns, its retry is routine, the give-up is an error: one line each
    levels = [(r.levelname, r.getMessage().split(": ")[0][-16:]) for r in caplog.records]
    assert [lv for lv, _ in levels] == ["WARNING", "INFO", "ERROR"], levels
    (failed,) = store.list_notifications("failed")
    assert failed.attempts == 3 and failed.last_error and "HTTP 500" in failed.last_error
    assert store.notification_counts()["failed"] == 1


def test_a_channel_without_a_secret_sends_no_signature_header(
    store: StateStore, repo: Path, receiver: Receiver
) -> None:
    applied(store, repo)
    store.write_notifications(
        new_rows("success", ["plain"], schedule=None, template="ping", run=None, detail={}),
        [],
        NOW,
    )
    _drain(store, ManualClock(NOW), rounds=1)
    (got,) = receiver.got
    assert "x-reconciler-signature-256" not in got.headers


def test_the_back_off_grows_with_full_jitter_up_to_five_minutes() -> None:
    import random

    rng = random.Random(7)
    ceilings = [2, 8, 32, 128, 300, 300]
    for attempt, ceiling in enumerate(ceilings, start=1):
        draws = [backoff(attempt, rng, 2.0, 300.0) for _ in range(200)]
        assert min(draws) >= 0 and max(draws) <= ceiling
        assert max(draws) > ceiling * 0.8  # the whole range is used


def test_an_email_goes_through_starttls_and_auth_with_credentials_from_valuefrom(
    store: StateStore, repo: Path, mailbox: Mailbox
) -> None:
    applied(store, repo)
    rows = new_rows(
        "failure",
        ["mail"],
        schedule="nightly",
        template="ping",
        run=None,
        detail={"status": "failed", "message": "host web-1 unreachable"},
    )
    store.write_notifications(rows, [], NOW)
    _drain(store, ManualClock(NOW), rounds=1, tls_context=mailbox.client_tls)
    assert store.notification_counts()["sent"] == 1, store.list_notifications()[0].last_error
    assert mailbox.logins == [("mailer", "mail-pw")]
    assert mailbox.tls_seen == [True]
    ((sender, to, raw),) = mailbox.messages
    assert (sender, to) == ("reconciler@example.com", ["ops@example.com"])
    msg = email.message_from_bytes(raw)
    assert msg["Subject"] == "[reconciler] nightly: failure"
    text = msg.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "host web-1 unreachable" in text and rows[0].delivery_id in text
    assert "mail-pw" not in raw.decode()


def test_an_approval_decision_notifies_the_schedule_channels(
    store: StateStore, tmp_path: Path, receiver: Receiver, hook_env: None
) -> None:
    from .conftest import schedule

    root = notify_repo(
        tmp_path / "repo", receiver.url, {"gated-job": schedule("gated-job", "{every: 1h}")}
    )
    root.joinpath("schedules/gated-job.yaml").write_text(
        schedule("gated-job", "{every: 1h}").replace("template: ping", "template: gated")
    )
    applied(store, root)
    # applying it awaiting approval wrote the waiting notification in the same transaction
    (waiting,) = store.list_notifications()
    assert (waiting.event, waiting.payload["detail"]["state"]) == ("approval", "waiting")
    assert notify_approval_decision(store, "gated-job", "approve", "alice", NOW) == 1
    _drain(store, ManualClock(NOW), rounds=1)
    states = [(d.json["event"], d.json["detail"]["state"]) for d in receiver.got]
    assert sorted(states) == [("approval", "approved"), ("approval", "waiting")]
    approved = next(d.json for d in receiver.got if d.json["detail"]["state"] == "approved")
    assert (approved["schedule"], approved["template"], approved["detail"]["user"]) == (
        "gated-job",
        "gated",
        "alice",
    )
