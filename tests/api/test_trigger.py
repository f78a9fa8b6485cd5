"""``POST /api/jobs/trigger`` against a real ``serve``: Otter's semantics (key in the header or
``?key=``, variables as a JSON body or query parameters), every problem named in one 400,
keys of every kind, ``at``, ``Idempotency-Key``, and the key's secret never echoed or logged."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.stores import open_store
from tests.daemon.conftest import Serve, until
from tests.gitutil import git

from .conftest import Api, start_api


def test_query_parameters_are_variables_converted_like_cli_vars_and_recorded_untrusted(
    api: Api,
) -> None:
    got = api.trigger("template=deploy&version=1.2&replicas=3&canary=yes&zones=a,b&ratio=0.5")
    assert got.status == 202, got.body
    run = got.body["run"]
    assert run["url"] == f"/api/runs/{run['id']}" and run["status"] in ("queued", "running")
    shown = api.call(run["url"]).body
    assert shown["trigger"] == "api" and shown["template"] == "deploy"
    assert shown["variables"] == {
        "version": "1.2",
        "replicas": 3,
        "canary": True,
        "zones": ["a", "b"],
        "ratio": 0.5,
    }
    with open_store(api.state) as store:
        rec = store.get_run(run["id"])
        assert rec is not None and rec.requested_by == "api-key:ci"
        assert set(rec.untrusted) == {"version", "replicas", "canary", "zones", "ratio"}


def test_a_json_body_gives_typed_variables_targets_and_simulate(api: Api) -> None:
    got = api.trigger(
        "template=deploy",
        body={
            "variables": {"version": "2", "mode": "safe", "zones": ["x"]},
            "targets": {"servers": ["web-1"], "roles": ["db"]},
            "simulate": True,
        },
    )
    assert got.status == 202, got.body
    shown = api.call(got.body["run"]["url"]).body
    assert shown["simulate"] is True
    assert shown["targets"]["servers"] == ["web-1"] and shown["targets"]["roles"] == ["db"]
    assert shown["variables"]["mode"] == "safe" and shown["variables"]["replicas"] == 1


def test_every_missing_unknown_and_bad_value_and_target_is_named_in_one_400(api: Api) -> None:
    got = api.trigger(
        "template=deploy&replicas=many&mode=slow&colour=red",
        body={"variables": {"sizee": 1}, "targets": {"servers": ["web-9"], "roles": ["nope"]}},
    )
    assert got.status == 400 and got.body["error"]["code"] == "bad-request"
    message = got.body["error"]["message"]
    for part in (
        'required variable "version"',
        'unknown variable "colour"',
        'unknown variable "sizee"',
        'variable "replicas" must be an integer',
        'variable "mode" must be one of "fast", "safe"',
        'unknown server "web-9"',
        'unknown role "nope"',
    ):
        assert part in message, (part, message)


def test_allow_new_variables_takes_unknown_names_but_never_ansible_own(api: Api) -> None:
    assert api.trigger("template=open&colour=red").status == 202
    got = api.trigger("template=open&ansible_connection=local")
    assert got.status == 400 and "ansible_connection" in got.body["error"]["message"]


def test_a_sensitive_value_is_refused_since_it_is_never_stored(api: Api) -> None:
    got = api.trigger("template=deploy&version=1", body={"variables": {"token": "s3cret"}})
    assert got.status == 400 and "sensitive" in got.body["error"]["message"]
    got = api.trigger("template=deploy&version=1&token=s3cret")
    assert got.status == 400


def test_bad_simulate_at_and_body_shapes_are_400s(api: Api) -> None:
    for query, body in (
        ("template=deploy&version=1&simulate=maybe", None),
        ("template=deploy&version=1&at=tomorrow", None),
        ("template=deploy&version=1&at=2030-01-01T00:00:00", None),  # no offset
        ("template=deploy", {"variables": [1, 2]}),
        ("template=deploy", {"targets": {"hosts": ["a"]}}),
        ("template=deploy", {"unknown": 1}),
        ("template=deploy&version=1", {"variables": {"version": "2"}}),  # given twice
    ):
        got = api.trigger(query, body=body)
        assert got.status == 400, (query, body, got.body)
        assert set(got.body["error"]) == {"code", "message"}


def test_at_queues_a_one_off_that_waits_and_cancel_ends_it(api: Api) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    got = api.trigger("template=deploy&version=1", body={"at": later})
    assert got.status == 202
    run_id = got.body["run"]["id"]
    time.sleep(0.3)  # one worker is idle: it would have taken a run that were due
    assert api.call(f"/api/runs/{run_id}").body["status"] == "queued"
    with open_store(api.state) as store:
        rec = store.get_run(run_id)
        assert rec is not None and rec.not_before == datetime.fromisoformat(later)
    assert api.call(f"/api/runs/{run_id}/cancel", "POST", key="read").status == 403
    assert api.call(f"/api/runs/{run_id}/cancel", "POST", key="other").status == 403
    done = api.call(f"/api/runs/{run_id}/cancel", "POST", key="ci")
    assert done.status == 200, done.body
    assert done.body["run"]["status"] == "cancelled" and done.body["cancel_requested"] is False
    again = api.call(f"/api/runs/{run_id}/cancel", "POST", key="approver")
    assert again.status == 409 and again.body["error"]["code"] == "conflict"
    missing = api.call("/api/runs/99999999/cancel", "POST", key="approver")
    assert missing.status == 404 and missing.body["error"]["code"] == "not-found"


def test_keys_missing_wrong_revoked_other_scope_other_template_not_listed(api: Api) -> None:
    query = "template=deploy&version=1"
    for key, status in (
        (None, 401),
        ("revoked", 401),
        ("read", 403),  # no trigger scope
        ("approver", 403),
        ("other", 403),  # in deploy's apiKeys, but not scoped to deploy
        ("outsider", 403),  # scoped to deploy, not in its apiKeys
    ):
        got = api.call(f"/api/jobs/trigger?{query}", "POST", key=key)
        assert got.status == status, (key, got.body)
        assert set(got.body["error"]) == {"code", "message"}
    bad = api.keys["ci"][:-2] + "xx"
    wrong = api.call(f"/api/jobs/trigger?{query}", "POST", key=None, headers={"X-API-Key": bad})
    assert wrong.status == 401
    assert api.trigger("template=nothing-here").status == 404
    # Otter's way: the key in the query
    got = api.call(f"/api/jobs/trigger?{query}&key={api.keys['ci']}", "POST", key=None)
    assert got.status == 202, got.body


def test_an_idempotency_key_replays_the_first_run_and_refuses_another_body(api: Api) -> None:
    first = api.trigger("template=deploy&version=7", headers={"Idempotency-Key": "launch-1"})
    again = api.trigger("template=deploy&version=7", headers={"Idempotency-Key": "launch-1"})
    assert first.status == again.status == 202
    assert first.body["run"]["id"] == again.body["run"]["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    other = api.trigger("template=deploy&version=8", headers={"Idempotency-Key": "launch-1"})
    assert other.status == 409 and str(first.body["run"]["id"]) in other.body["error"]["message"]
    # per API key: another key's same Idempotency-Key is another request
    mine = api.trigger("template=ping", key="other", headers={"Idempotency-Key": "launch-1"})
    assert mine.status == 202 and mine.body["run"]["id"] != first.body["run"]["id"]
    with open_store(api.state) as store:
        runs = [
            r
            for r in store.list_runs(template="deploy", limit=500)
            if r.variables.get("version") == "7"
        ]
        assert len(runs) == 1
    assert api.trigger("template=ping", headers={"Idempotency-Key": "x" * 300}).status == 400


def test_an_idempotency_key_matches_the_same_request_however_it_is_spelled(api: Api) -> None:
    idem = {"Idempotency-Key": "spelled-twice"}
    query = api.trigger(
        "template=deploy&version=9&replicas=2&at=2030-01-01T01:00:00%2B01:00", headers=idem
    )
    body = api.trigger(
        "template=deploy",
        headers=idem,
        body={"variables": {"replicas": 2, "version": "9"}, "at": "2030-01-01T00:00:00Z"},
    )
    assert query.status == body.status == 202, (query.body, body.body)
    assert query.body["run"]["id"] == body.body["run"]["id"]


def test_the_secret_is_never_in_the_log_the_state_or_a_response(api: Api) -> None:
    secret = api.keys["ci"]
    answers = [
        api.call(f"/api/jobs/trigger?template=ping&key={secret}", "POST", key=None),
        api.call(f"/api/jobs/trigger?template=nope&key={secret}", "POST", key=None),
        api.call(f"/api/runs?key={secret}", key=None),
    ]
    assert [a.status for a in answers] == [202, 404, 403]
    run = api.call(answers[0].body["run"]["url"]).body
    for a in [*answers, api.call(answers[0].body["run"]["url"])]:
        assert secret.encode() not in a.raw
    assert secret not in json.dumps(run)
    time.sleep(0.2)
    log = api.serve.log.read_text()
    assert "POST /api/jobs/trigger 202" in log  # our request log is on
    assert "template=" not in log and "key=" not in log  # uvicorn's access log is off
    for name, value in api.keys.items():
        assert value not in log, name
        for f in Path(api.state).parent.glob("state.sqlite*"):
            assert value.encode() not in f.read_bytes(), (name, f)


def test_what_a_trigger_kept_is_checked_again_where_its_run_is_written(
    tmp_path: Path, serves: list[Serve]
) -> None:
    """The endpoint keeps the keys and the applied template it has seen, so a repeated
    trigger reads nothing before its write; the write checks the state's serial and the key
    in its own transaction. A commit applied since is then in force for the next trigger,
    and a key revoked since stops at once, with no run written."""
    a = start_api(tmp_path, str(tmp_path / "state.sqlite"), "--workers", "0")
    serves.append(a.serve)
    root = a.serve.repo
    for _ in range(3):  # the first reads the state and keeps; the others use what it kept
        assert a.trigger("template=open&colour=red").status == 202
    text = (root / "schedules" / "open.yaml").read_text()
    (root / "schedules" / "open.yaml").write_text(
        text.replace("allowNewVariables: true", "allowNewVariables: false")
    )
    git(root, "commit", "-qam", "no new variables")
    head = git(root, "rev-parse", "HEAD")
    until(lambda: a.serve.get("/api/status")["applied"]["revision"] == head, 30, "the apply")
    refused = a.trigger("template=open&colour=red")
    assert refused.status == 400, refused.body
    assert 'unknown variable "colour"' in refused.body["error"]["message"]
    after = a.trigger("template=open")
    assert after.status == 202
    assert a.call(f"/api/runs/{after.body['run']['id']}").body["commit"] == head
    with open_store(a.state) as store:
        before = len(store.list_runs(template="open", limit=100))
        assert store.revoke_api_key("ci", datetime.now(UTC))
    gone = a.trigger("template=open")
    assert gone.status == 401 and gone.body["error"]["code"] == "unauthorized"
    assert a.trigger("template=open").status == 401
    with open_store(a.state) as store:
        assert len(store.list_runs(template="open", limit=100)) == before == 4
