"""The read endpoints against a real ``serve``: schedules, slots, runs with filters and pages,
one run, following a log to its end; unknown names and ids are 404 error objects."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

from .conftest import Api


def test_schedules_are_the_cli_object_with_system_jobs_on_request(api: Api) -> None:
    got = api.call("/api/schedules?upcoming=2")
    assert got.status == 200 and "system" not in got.body
    (row,) = got.body["schedules"]
    assert row["name"] == "nightly" and row["template"] == "ping" and row["state"] == "active"
    assert len(row["next"]) == 2 and row["next"][0].endswith("+00:00")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the daemon records its system jobs once it ran them
        system = api.call("/api/schedules?system=true").body["system"]
        if system:
            break
        time.sleep(0.1)
    assert {j["state"] for j in system} == {"system"}
    one = api.call("/api/schedules/nightly", key="approver")
    assert one.status == 200 and one.body["spec"]["template"] == "ping"
    assert one.body["name"] == "nightly"
    slots = api.call("/api/schedules/nightly/slots?limit=5").body["slots"]
    assert isinstance(slots, list) and all(s["schedule"] == "nightly" for s in slots)
    for path in ("/api/schedules/nope", "/api/schedules/nope/slots"):
        missing = api.call(path)
        assert missing.status == 404 and missing.body["error"]["code"] == "not-found"
    assert api.call("/api/schedules", key=None).status == 401
    assert api.call("/api/schedules", key="ci").status == 403  # a trigger key does not read
    assert api.call("/api/schedules/nightly/slots?since=2026-01-01T00:00:00").status == 400


def test_runs_page_newest_first_with_filters_and_a_next_link(api: Api) -> None:
    made = [api.trigger("template=open&n=" + str(i)).body["run"]["id"] for i in range(5)]
    seen: list[int] = []
    path: str | None = "/api/runs?template=open&trigger=api&limit=2"
    pages = 0
    while path is not None and pages < 10:
        page = api.call(path).body
        seen += [r["id"] for r in page["runs"]]
        assert all(r["template"] == "open" and r["trigger"] == "api" for r in page["runs"])
        path = page["next"]
        pages += 1
        if path:
            q = parse_qs(urlparse(path).query)
            assert q["template"] == ["open"] and q["limit"] == ["2"]
    assert seen == sorted(seen, reverse=True) and set(made) <= set(seen)
    assert api.call("/api/runs?status=bogus").status == 400
    assert api.call("/api/runs?limit=501").status == 400
    assert api.call("/api/runs/0").status == 400
    missing = api.call("/api/runs/99999999")
    assert missing.status == 404 and missing.body["error"] == {
        "code": "not-found",
        "message": "no run 99999999",
    }
    assert api.call("/api/runs/99999999/log").status == 404


def test_a_client_follows_a_live_log_by_its_offsets_to_the_end(api: Api) -> None:
    run = api.trigger("template=ping").body["run"]
    offset, text, complete = 0, "", False
    deadline = time.monotonic() + 20
    while not complete and time.monotonic() < deadline:
        part = api.call(f"{run['url']}/log?offset={offset}").body
        assert part["offset"] == offset and part["next_offset"] >= offset
        text += part["data"]
        offset, complete = part["next_offset"], part["complete"]
        if not complete:
            time.sleep(0.05)
    assert complete, "the run never ended"
    shown = api.call(run["url"]).body
    assert shown["status"] == "succeeded" and shown["finished"] is not None
    tail = api.call(f"{run['url']}/log?offset={offset}").body
    assert tail["data"] == "" and tail["complete"] is True
    assert len(text.encode()) == offset
