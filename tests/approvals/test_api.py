"""The approval endpoints through a real ``serve`` (real HTTP on 127.0.0.1, the fake executor
behind the real daemon): an approve key acts as its Policy user, a read key gets 403, a forced
approval of a past-due ``at:`` runs it once, dry-run queues a simulate run."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.engine.keys import create_key
from reconciler.engine.planning import apply_plan, load_tracked_source, plan_against_state
from reconciler.stores import open_store
from tests.daemon.conftest import Serve, until

from .conftest import make_repo


def call(
    serve: Serve, method: str, path: str, key: str | None, body: Any = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else b"" if method == "POST" else None
    req = urllib.request.Request(serve.url + path, method=method, data=data)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if key is not None:
        req.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def runs_of(state: str, schedule: str) -> list[Any]:
    with open_store(state) as store:
        return store.list_runs(schedule=schedule)


def slot_reason(state: str, schedule: str, slot: datetime) -> str | None:
    with open_store(state) as store:
        entry = store.get_slot(schedule, slot)
        return None if entry is None else (entry.skip_reason or "run")


def test_approve_deny_and_dry_run_through_a_running_serve(
    tmp_path: Path, serves: list[Serve]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    slot = now + timedelta(seconds=4)
    once = f"""
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {{name: once}}
        spec:
          template: deploy
          owner: ops
          when: {{at: "{slot.replace(tzinfo=None).isoformat()}"}}
        """
    repo = make_repo(tmp_path / "repo", author="frank", extra={"schedules/once.yaml": once})
    state = str(tmp_path / "state.sqlite")
    keys: dict[str, str] = {}
    with open_store(state) as store:
        source, result = load_tracked_source(str(repo), None, now)
        assert result.desired is not None
        plan = plan_against_state(result.desired, store, now, timedelta(days=7))
        apply_plan(store, plan, now, str(repo), source.git)
        for user in ("bob", "frank", "erin"):
            keys[user] = create_key(store, f"{user}-key", ["approve"], [], user, now)[1]
    serve = Serve(repo, state, "--workers", "1")
    serves.append(serve)

    # who may act
    assert call(serve, "POST", "/api/schedules/nightly/approve", None)[0] == 401
    status, body = call(serve, "POST", "/api/schedules/nightly/approve", serve.key)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = call(serve, "POST", "/api/schedules/nightly/approve", keys["frank"])
    assert (status, body["error"]["code"]) == (403, "not-eligible")
    assert "authored this change" in body["error"]["message"]
    status, body = call(serve, "POST", "/api/schedules/nope/approve", keys["bob"])
    assert (status, body["error"]["code"]) == (404, "not-found")
    status, body = call(serve, "POST", "/api/schedules/plain/deny", keys["bob"])
    assert (status, body["error"]["code"]) == (409, "no-approval")
    status, body = call(serve, "GET", "/api/approvals", serve.key)
    assert status == 200
    queue = {e["schedule"]: e for e in body["approvals"]}
    assert (
        queue["nightly"]["state"] == "awaiting-approval" and queue["nightly"]["author"] == "frank"
    )

    # dry-run: a simulate run through the daemon's workers, nothing approved
    status, body = call(serve, "POST", "/api/schedules/nightly/dry-run", keys["erin"])
    assert status == 202, body
    run_id = body["run"]["id"]
    assert body["run"]["url"] == f"/api/runs/{run_id}"

    def finished() -> bool:
        with open_store(state) as store:
            r = store.get_run(run_id)
            return r is not None and r.status == "succeeded"

    until(finished, 30, "the dry-run to finish")
    [dry] = runs_of(state, "nightly")
    assert (dry.simulate, dry.trigger, dry.requested_by) == (True, "api", "api-key:erin-key")

    status, body = call(serve, "POST", "/api/schedules/nightly/approve", keys["bob"])
    assert (status, body["state"]) == (200, "active"), body
    status, body = call(
        serve, "POST", "/api/schedules/nightly/deny", keys["erin"], {"reason": "freeze"}
    )
    assert (status, body["state"]) == (200, "denied"), body
    with open_store(state) as store:
        denial = [a for a in store.list_approvals("nightly") if a.user == "erin"]
    assert [(a.decision, a.reason, a.via) for a in denial] == [("deny", "freeze", "api")]

    # the at: passes while it waits; then only a forced approval lets it run, once
    until(lambda: slot_reason(state, "once", slot) == "approval-pending", 30, "the at: to pass")
    status, body = call(serve, "POST", "/api/schedules/once/approve", keys["bob"])
    assert (status, body["error"]["code"]) == (409, "past-due"), body
    status, body = call(serve, "POST", "/api/schedules/once/approve?force=true", keys["bob"])
    assert (status, body["state"]) == (200, "active"), body
    until(lambda: [r.status for r in runs_of(state, "once")] == ["succeeded"], 30, "the run")
    assert slot_reason(state, "once", slot) == "run"
    with open_store(state) as store:
        assert [r.slot for r in store.list_runs(schedule="once")] == [slot]
    assert (
        "approve" not in serve.log.read_text().lower() or keys["bob"] not in serve.log.read_text()
    )
