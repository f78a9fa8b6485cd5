"""``GET /api/schedules.ics`` from a real ``serve``: an RFC 5545 feed of the upcoming fire times
that parses back (with the icalendar package, not our own code) to exactly the fire times that
``reconciler schedules`` shows, with stable UIDs, label filters and folded CRLF lines."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import icalendar

from .conftest import Serve, make_repo, schedule, until


def fetch(s: Serve, query: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(f"{s.url}/api/schedules.ics?{query}", timeout=10) as r:
        return r.headers["Content-Type"], r.read()


def test_the_feed_parses_back_to_the_upcoming_fire_times_with_stable_uids(
    tmp_path: Path, serves: list[Serve]
) -> None:
    docs = {
        "nightly": schedule("nightly", '{daily: {at: "02:00"}, timezone: Europe/Berlin}'),
        "jittered": schedule("jittered", '{cron: "*/30 * * * *", jitter: 10m}'),
        "paused": schedule("paused", '{daily: {at: "03:00"}}', enabled="false"),
    }
    docs["nightly"] = docs["nightly"].replace(
        "metadata: {name: nightly}",
        'metadata: {name: nightly, labels: {team: web}, description: "Backups; the, big one"}',
    )
    repo = make_repo(tmp_path, docs)
    state = str(tmp_path / "state.sqlite")
    s = Serve(repo, state, "--workers", "0", "--poll", "1h")
    serves.append(s)
    until(lambda: s.get("/api/status")["applied"]["revision"] is not None, 20, "the apply")  # type: ignore[index]

    kind, body = fetch(s, f"key={s.key}&days=2")
    assert kind.startswith("text/calendar")
    assert body.endswith(b"\r\n") and b"\n" not in body.replace(b"\r\n", b"")
    assert all(len(line) <= 75 for line in body.split(b"\r\n"))
    cal = icalendar.Calendar.from_ical(body)
    events = [c for c in cal.walk("VEVENT")]
    by_schedule: dict[str, list[datetime]] = {}
    for e in events:
        name = str(e["SUMMARY"]).split(" (")[0]
        by_schedule.setdefault(name, []).append(e.decoded("DTSTART"))
    assert set(by_schedule) == {"nightly", "jittered"}  # a paused schedule does not fire
    # 48 h of a half-hourly schedule: 96 slots, the last one's jitter may push it out
    assert len(by_schedule["nightly"]) == 2 and len(by_schedule["jittered"]) in (95, 96)
    nightly = next(e for e in events if str(e["SUMMARY"]).startswith("nightly"))
    assert "Backups; the, big one" in str(nightly["DESCRIPTION"])  # escaped, then unescaped
    assert "team=web" in nightly.to_ical().decode()

    # the same instants as `reconciler schedules --upcoming`, jitter included
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "schedules",
            "--upcoming",
            "2",
            "--state",
            state,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    rows = {r["name"]: r["next"] for r in json.loads(shown.stdout)["schedules"]}
    for name in ("nightly", "jittered"):
        expected = [datetime.fromisoformat(t).astimezone(UTC) for t in rows[name]]
        assert sorted(by_schedule[name])[:2] == expected

    # a refresh gives the same UIDs (calendar clients update, not duplicate)
    _, again = fetch(s, f"key={s.key}&days=2")
    uids = [str(e["UID"]) for e in events]
    assert uids == [str(e["UID"]) for e in icalendar.Calendar.from_ical(again).walk("VEVENT")]
    assert len(set(uids)) == len(uids)

    # per label; limit per schedule
    _, web = fetch(s, f"key={s.key}&label=team=web&days=7")
    names = {str(e["SUMMARY"]) for e in icalendar.Calendar.from_ical(web).walk("VEVENT")}
    assert names == {"nightly (ping)"}
    _, capped = fetch(s, f"key={s.key}&days=7&limit=3")
    assert len(icalendar.Calendar.from_ical(capped).walk("VEVENT")) == 6

    _, any_team = fetch(s, f"key={s.key}&label=team&days=7")
    assert {str(e["SUMMARY"]) for e in icalendar.Calendar.from_ical(any_team).walk("VEVENT")} == {
        "nightly (ping)"
    }
    for query, code in (("", 401), ("key=rk_nope", 401), (f"key={s.key}&days=99", 400)):
        try:
            fetch(s, query)
            raise AssertionError(f"{query!r} answered 200")
        except urllib.error.HTTPError as e:
            assert e.code == code and json.load(e)["error"]["code"]
    assert s.key not in s.log.read_text()  # the feed URL's key is never logged
