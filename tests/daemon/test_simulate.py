"""``reconciler simulate``: the ledger the daemon's firing code writes over a range of time, under
a simulated clock. DST weeks, outages and the misfire policies, overlap with runs longer than
the interval, jitter; and the law that makes it an oracle: its ledger is the one a real
FiringLoop on a real store (SQLite or PostgreSQL) records when the daemon is driven the same
way, however often that loop is woken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli.main import cli
from reconciler.clock import ManualClock
from reconciler.engine.desired import load_repo
from reconciler.engine.firing import FiringLoop
from reconciler.engine.simulating import (
    DRAIN_GRACE,
    Outage,
    SimEntry,
    Simulation,
    SimulationTooLarge,
    simulate,
)
from reconciler.errors import UsageError
from reconciler.scheduling.jitter import fire_at
from reconciler.stores import StateStore, open_store
from tests.gitutil import git

from .conftest import apply_dir, schedule, write_repo

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 6, 15, 10, 0, 30, tzinfo=UTC)
BERLIN = "timezone: Europe/Berlin"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def sim(
    root: Path,
    schedules: dict[str, str],
    start: datetime,
    end: datetime,
    outages: Sequence[Outage] = (),
    run_time: timedelta = timedelta(0),
    **kw: Any,
) -> Simulation:
    write_repo(root, schedules)
    _, result = load_repo(str(root), None, "worktree", start)
    assert result.desired is not None, [d.message for d in result.diagnostics]
    return simulate(result.desired, start, end, outages, run_time, **kw)


def local_fires(s: Simulation, name: str) -> list[str]:
    return [e.local_fire_at.isoformat() for e in s.entries if e.entry.schedule == name]


def ledger(s: Simulation, name: str) -> list[tuple[str, str | None, int]]:
    """(slot as day hh:mm, skip reason or None for a run, count), oldest first."""
    return [
        (e.entry.slot.strftime("%d %H:%M"), e.entry.skip_reason, e.entry.count)
        for e in s.entries
        if e.entry.schedule == name
    ]


def runs_of(s: Simulation, name: str) -> list[SimEntry]:
    return [e for e in s.entries if e.entry.schedule == name and e.run is not None]


# -- DST


def test_a_dst_week_in_berlin_moves_the_gap_time_to_the_first_instant_after_it(
    tmp_path: Path,
) -> None:
    docs = {
        "nightly": schedule("nightly", f'{{daily: {{at: "02:30"}}, {BERLIN}}}'),
        # a ``*`` in the minute field: real time, so a local time that does not exist is skipped
        "halves": schedule("halves", f'{{cron: "*/30 2 * * *", {BERLIN}}}'),
    }
    s = sim(tmp_path, docs, _utc("2026-03-26T00:00:00Z"), _utc("2026-04-01T00:00:00+02:00"))
    assert local_fires(s, "nightly") == [
        "2026-03-26T02:30:00+01:00",
        "2026-03-27T02:30:00+01:00",
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist that night
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    halves = local_fires(s, "halves")
    assert len(halves) == 10 and not [t for t in halves if t.startswith("2026-03-29")]
    assert {e.run.status for e in runs_of(s, "nightly") if e.run} == {"succeeded"}
    [change] = s.transitions
    assert (change.timezone, change.at.isoformat()) == (
        "Europe/Berlin",
        "2026-03-29T03:00:00+02:00",
    )
    assert (change.offset_before, change.offset_after) == (timedelta(hours=1), timedelta(hours=2))


def test_at_fall_back_a_fixed_time_fires_once_and_a_real_time_schedule_twice(
    tmp_path: Path,
) -> None:
    docs = {
        "nightly": schedule("nightly", f'{{daily: {{at: "02:30"}}, {BERLIN}}}'),
        "halves": schedule("halves", f'{{cron: "*/30 2 * * *", {BERLIN}}}'),
    }
    s = sim(tmp_path, docs, _utc("2026-10-23T00:00:00Z"), _utc("2026-10-28T00:00:00Z"))
    assert local_fires(s, "nightly") == [
        "2026-10-23T02:30:00+02:00",
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",  # the first 02:30 only
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    assert [t for t in local_fires(s, "halves") if t.startswith("2026-10-25")] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
    ]


# -- outages and misfire


def test_an_outage_follows_each_misfire_policy_when_serve_starts_again(tmp_path: Path) -> None:
    docs = {
        "once": schedule("once", '{every: 10m, start: "2026-06-15T00:00:00Z"}'),
        "skip": schedule(
            "skip", '{every: 10m, start: "2026-06-15T00:00:00Z"}', misfire="{policy: skip}"
        ),
        "all": schedule(
            "all",
            '{every: 10m, start: "2026-06-15T00:00:00Z"}',
            misfire="{policy: all, window: 30m}",
            overlap="allow",
        ),
    }
    down = Outage(_utc("2026-06-15T10:30:30Z"), _utc("2026-06-15T12:00:30Z"))
    s = sim(tmp_path, docs, T0, down.end, [down])
    before = [(f"15 10:{m}", None, 1) for m in (10, 20, 30)]
    assert ledger(s, "once") == [*before, ("15 10:40", "misfire", 8), ("15 12:00", None, 1)]
    assert ledger(s, "skip") == [*before, ("15 10:40", "misfire", 8), ("15 12:00", None, 1)]
    assert ledger(s, "all") == [
        *before,
        ("15 10:40", "misfire", 6),
        ("15 11:40", None, 1),
        ("15 11:50", None, 1),
        ("15 12:00", None, 1),
    ]
    late = [e for e in s.entries if e.entry.slot > down.start]
    assert {e.entry.recorded_at for e in late} == {down.end}  # decided at the restart
    triggers = {e.entry.slot.strftime("%H:%M"): e.run.trigger for e in runs_of(s, "all") if e.run}
    assert triggers["11:40"] == triggers["11:50"] == "catch-up"
    assert triggers["12:00"] == "schedule"


def test_once_without_an_on_time_slot_runs_the_newest_missed_one_as_the_catch_up(
    tmp_path: Path,
) -> None:
    docs = {"o": schedule("o", '{every: 10m, start: "2026-06-15T00:00:00Z"}')}
    down = Outage(_utc("2026-06-15T10:30:30Z"), _utc("2026-06-15T11:05:00Z"))
    s = sim(tmp_path, docs, T0, _utc("2026-06-15T11:06:00Z"), [down])
    assert ledger(s, "o")[3:] == [("15 10:40", "misfire", 2), ("15 11:00", None, 1)]
    catch_up = runs_of(s, "o")[-1].run
    assert catch_up is not None and catch_up.trigger == "catch-up"
    assert catch_up.message == "missed; the one catch-up run for 3 missed slot(s)"


def test_a_stop_lets_runs_finish_within_the_grace_period_and_queued_runs_wait_for_the_restart(
    tmp_path: Path,
) -> None:
    docs = {
        "short": schedule("short", '{cron: "0 * * * *"}', overlap="allow"),
        "queue": schedule("queue", '{cron: "*/10 * * * *"}', overlap="queue"),
    }
    down = Outage(_utc("2026-06-15T11:00:10Z"), _utc("2026-06-15T11:30:00Z"))
    s = sim(tmp_path, docs, T0, _utc("2026-06-15T11:31:00Z"), [down], timedelta(minutes=15))
    by_slot = {e.entry.slot.strftime("%H:%M"): e.run for e in runs_of(s, "queue")}
    # 10:40's run waited for 10:30's and started at 10:55, so it would run until 11:10, past
    # the 30 s grace after the stop at 11:00:10: cancelled then
    r1040 = by_slot["10:40"]
    assert r1040 is not None and r1040.started_at == _utc("2026-06-15T10:55:00Z")
    assert r1040.status == "cancelled" and r1040.finished_at == down.start + DRAIN_GRACE
    # 11:00's was queued behind it when serve stopped; it starts when serve starts again
    r1100 = by_slot["11:00"]
    assert r1100 is not None and r1100.started_at == down.end and r1100.status == "running"
    short = runs_of(s, "short")
    assert [e.run.status for e in short if e.run] == ["cancelled"]  # 11:00 until 11:15


# -- overlap


OVERLAP_T1 = _utc("2026-06-15T11:15:00Z")


def _overlap(tmp_path: Path, policy: str) -> Simulation:
    docs = {"o": schedule("o", '{cron: "*/10 * * * *"}', overlap=policy)}
    return sim(tmp_path, docs, T0, OVERLAP_T1, run_time=timedelta(minutes=25))


def _timeline(s: Simulation) -> list[tuple[str, str, str | None]]:
    """(slot hh:mm, skipped reason or run status, hh:mm the run started)"""
    out = []
    for e in s.entries:
        r = e.run
        started = r.started_at.strftime("%H:%M") if r and r.started_at else None
        what = r.status if r else str(e.entry.skip_reason)
        out.append((e.entry.slot.strftime("%H:%M"), what, started))
    return out


def test_overlap_skip_skips_the_slots_a_long_run_overlaps(tmp_path: Path) -> None:
    assert _timeline(_overlap(tmp_path, "skip")) == [
        ("10:10", "succeeded", "10:10"),
        ("10:20", "overlap", None),
        ("10:30", "overlap", None),
        ("10:40", "succeeded", "10:40"),  # the 10:10 run ended at 10:35
        ("10:50", "overlap", None),
        ("11:00", "overlap", None),
        ("11:10", "running", "11:10"),
    ]


def test_overlap_queue_holds_one_waiting_run_that_starts_when_the_running_one_ends(
    tmp_path: Path,
) -> None:
    s = _overlap(tmp_path, "queue")
    assert _timeline(s) == [
        ("10:10", "succeeded", "10:10"),
        ("10:20", "succeeded", "10:35"),
        ("10:30", "overlap", None),
        ("10:40", "running", "11:00"),  # until 11:25
        ("10:50", "overlap", None),
        ("11:00", "queued", None),  # behind 10:40's run
        ("11:10", "overlap", None),
    ]
    skip = next(e for e in s.entries if e.entry.skip_reason == "overlap")
    assert skip.entry.detail == "a run is already waiting (queue holds one waiting run at most)"


def test_overlap_cancel_cancels_the_running_one_and_allow_runs_them_side_by_side(
    tmp_path: Path,
) -> None:
    cancel = _overlap(tmp_path / "cancel", "cancel")
    assert [w for _, w, _ in _timeline(cancel)] == ["cancelled"] * 6 + ["running"]
    first = cancel.entries[0].run
    assert first is not None and first.finished_at == _utc("2026-06-15T10:20:00Z")
    assert first.message == "overlap: cancelled for a newer slot"
    allow = _overlap(tmp_path / "allow", "allow")
    assert [w for _, w, _ in _timeline(allow)] == ["succeeded"] * 5 + ["running"] * 2


# -- jitter


def test_jitter_is_shown_in_fire_at_and_each_run_starts_then(tmp_path: Path) -> None:
    docs = {"j": schedule("j", '{every: 10m, start: "2026-06-15T00:00:00Z", jitter: 7m}')}
    end = T0 + timedelta(hours=2)
    s = sim(tmp_path, docs, T0, end)
    jitter, every = timedelta(minutes=7), timedelta(minutes=10)
    slots = [_utc("2026-06-15T10:10:00Z") + i * every for i in range(12)]
    assert [e.entry.slot for e in s.entries] == [
        slot for slot in slots if fire_at("j", slot, jitter, slot + every) <= end
    ]
    delays = set()
    for e in s.entries:
        slot = e.entry.slot
        assert e.fire_at == fire_at("j", slot, jitter, slot + every)
        assert e.run is not None and e.run.started_at == e.fire_at == e.entry.recorded_at
        delays.add(e.fire_at - slot)
    assert all(timedelta(0) <= d < jitter for d in delays) and len(delays) > 3


# -- bounds and the range


def test_a_range_with_more_slots_than_the_limit_is_refused_before_anything_fires(
    tmp_path: Path,
) -> None:
    docs = {"s": schedule("s", "{every: 1m}")}
    with pytest.raises(SimulationTooLarge, match="more than 100 slots"):
        sim(tmp_path, docs, T0, T0 + timedelta(hours=2), limit=100)
    assert len(sim(tmp_path, docs, T0, T0 + timedelta(minutes=100), limit=100).entries) == 100


@pytest.mark.parametrize(
    ("start", "end", "outages", "message"),
    [
        (T0, T0, [], "is not after --from"),
        (T0, T0 + timedelta(hours=1), [(T0 - timedelta(minutes=1), T0)], "is not inside"),
        (
            T0,
            T0 + timedelta(hours=1),
            [
                (T0, T0 + timedelta(minutes=20)),
                (T0 + timedelta(minutes=10), T0 + timedelta(hours=1)),
            ],
            "overlaps",
        ),
        (T0.replace(tzinfo=None), T0 + timedelta(hours=1), [], "has no UTC offset"),
    ],
)
def test_a_range_that_makes_no_sense_is_one_clear_error(
    tmp_path: Path,
    start: datetime,
    end: datetime,
    outages: list[tuple[datetime, datetime]],
    message: str,
) -> None:
    with pytest.raises(UsageError, match=message):
        sim(tmp_path, {}, start, end, [Outage(a, b) for a, b in outages])


# -- the oracle: the same ledger as the real loop on a real store


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    whens = [
        '{every: 10m, start: "2026-01-01T00:00:00Z"}',
        '{every: 25m, start: "2026-01-01T00:07:00Z"}',
        '{cron: "*/20 * * * *", timezone: Europe/Berlin}',
        '{daily: {at: "02:30"}, timezone: Europe/Berlin}',
        '{cron: "0 */3 * * *", timezone: America/New_York}',
    ]
    docs: dict[str, str] = {}
    for i in range(draw(st.integers(1, 3))):
        when = draw(st.sampled_from(whens))
        jitter = draw(st.sampled_from([None, "2m", "7m"]))
        if jitter:
            when = when[:-1] + f", jitter: {jitter}}}"
        policy = draw(st.sampled_from(["once", "skip", "all"]))
        window = draw(st.sampled_from(["30m", "1d"]))
        extra = {
            "misfire": f"{{policy: {policy}, window: {window}}}",
            "overlap": draw(st.sampled_from(["skip", "queue", "cancel", "allow"])),
        }
        if draw(st.integers(0, 9)) == 0:
            extra["enabled"] = "false"
        docs[f"s{i}"] = schedule(f"s{i}", when, **extra)
    base = draw(
        st.sampled_from(
            [_utc("2026-03-28T18:00:00Z"), _utc("2026-10-24T18:00:00Z"), T0]  # two DST nights
        )
    )
    start = base + timedelta(seconds=draw(st.integers(0, 6 * 3600)))
    end = start + timedelta(minutes=draw(st.integers(60, 18 * 60)))
    span = int((end - start).total_seconds())
    cuts = sorted(draw(st.lists(st.integers(0, span), max_size=4, unique=True)))
    outages = [
        Outage(start + timedelta(seconds=a), start + timedelta(seconds=b))
        for a, b in zip(cuts[::2], cuts[1::2], strict=False)
    ]
    wakes = [start + timedelta(seconds=w) for w in draw(st.lists(st.integers(0, span), max_size=8))]
    run_time = timedelta(minutes=draw(st.sampled_from([0, 5, 25, 90])))
    return {
        "docs": docs,
        "start": start,
        "end": end,
        "outages": outages,
        "run_time": run_time,
        "wakes": wakes,
    }


#: The ``timeout`` of the test's template (the default: it sets none).
TEMPLATE_TIMEOUT = timedelta(hours=1)


def drive_real(
    store: StateStore,
    root: Path,
    start: datetime,
    end: datetime,
    outages: list[Outage],
    run_time: timedelta,
    wakes: list[datetime],
) -> None:
    """The daemon on ``store``: a FiringLoop per start of serve, woken at each fire time, at
    each run's end and at every instant of ``wakes``; workers that claim whatever may start
    at every wake and take ``run_time`` per run (at most the template's timeout); a stop that
    drains as SIGTERM does."""
    apply_dir(store, root, start)
    clock = ManualClock(start)
    running: dict[int, tuple[str, datetime, str]] = {}
    claims = [0]

    def finish(now: datetime) -> None:
        for ends, run_id in sorted((v[1], k) for k, v in running.items() if v[1] <= now):
            worker, _, status = running.pop(run_id)
            message = None if status == "succeeded" else "drained"
            assert store.record_outcome(run_id, worker, status, message, [], [], ends)  # type: ignore[arg-type]

    def claim(now: datetime) -> None:
        while True:
            claims[0] += 1
            worker = f"oracle/{claims[0]}"
            run = store.claim_next_run(worker, 7200, now)
            if run is None:
                return
            if run_time > TEMPLATE_TIMEOUT:  # the executor's watchdog stops it
                running[run.id] = (worker, now + TEMPLATE_TIMEOUT, "timed-out")
            else:
                running[run.id] = (worker, now + run_time, "succeeded")

    def cancels(now: datetime) -> None:
        for run_id in sorted(running):
            worker, _, _ = running[run_id]
            if store.heartbeat(run_id, worker, 7200, now) == "cancel":
                del running[run_id]
                note = store.cancel_note(run_id)
                store.record_outcome(run_id, worker, "cancelled", note, [], [], now)

    ups: list[tuple[datetime, datetime, bool]] = []
    at = start
    for o in sorted(outages, key=lambda o: o.start):
        ups.append((at, o.start, False))
        at = o.end
    ups.append((at, end, True))
    for up_from, up_to, last in ups:
        if up_from == up_to and not last:
            continue
        clock.set(up_from)
        loop = FiringLoop(store, clock)
        extra = sorted(w for w in wakes if up_from < w < up_to or (last and w == up_to))
        now = up_from
        for _ in range(20_000):
            finish(now)
            claim(now)
            loop.step()
            claim(now)
            cancels(now)
            claim(now)
            later = [t for t in extra if t > now]
            ends = [v[1] for v in running.values()]
            deadline = loop.next_deadline()
            nxt = min([*later, *ends, *([deadline] if deadline else [])], default=None)
            if nxt is None or nxt > up_to or (nxt == up_to and not last):
                break
            now = max(nxt, now)
            clock.set(now)
        else:
            raise AssertionError("the drive did not reach its end")
        if not last:
            for run_id, (worker, ends, _) in list(running.items()):
                if ends > up_to + DRAIN_GRACE:
                    running[run_id] = (worker, up_to + DRAIN_GRACE, "cancelled")


def _comparable(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=lambda r: (r[1], r[0]))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=scenarios(), backend=st.sampled_from(["sqlite", "postgresql"]))
def test_simulate_records_the_ledger_a_real_firing_loop_records_on_a_real_store(
    case: dict[str, Any], backend: str, new_pg_state: Callable[[], str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        s = sim(root, case["docs"], case["start"], case["end"], case["outages"], case["run_time"])
        url = str(Path(tmp) / "state.db") if backend == "sqlite" else new_pg_state()
        with open_store(url, lock_timeout=10) as store:
            drive_real(
                store,
                root,
                case["start"],
                case["end"],
                case["outages"],
                case["run_time"],
                case["wakes"],
            )
            real = store.list_slots(None, None, 100_000)
            runs = {r.id: r for r in store.list_runs(limit=100_000)}
    got = [
        (
            e.entry.schedule,
            e.entry.slot,
            e.entry.skip_reason,
            e.entry.detail,
            e.entry.until,
            e.entry.count,
            e.entry.recorded_at,
            e.run and (e.run.trigger, e.run.status, e.run.started_at, e.run.finished_at),
        )
        for e in s.entries
    ]
    want = []
    for e in real:
        r = runs.get(e.run_id) if e.run_id is not None else None
        want.append(
            (
                e.schedule,
                e.slot,
                e.skip_reason,
                e.detail,
                e.until,
                e.count,
                e.recorded_at,
                r and (r.trigger, r.status, r.started_at, r.finished_at),
            )
        )
    assert _comparable(got) == _comparable(want)


# -- the command


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["simulate", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """As a user runs it: a new process, through ``main`` and its error handling."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "simulate", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_json_document_holds_the_slot_objects_oldest_first(tmp_path: Path) -> None:
    docs = {
        "nightly": schedule("nightly", f'{{daily: {{at: "02:30"}}, {BERLIN}}}'),
        "j": schedule("j", '{every: 1h, start: "2026-03-28T00:00:00Z", jitter: 10m}'),
    }
    write_repo(tmp_path, docs)
    args = ["--from", "2026-03-28T00:00:00Z", "--to", "2026-03-30T00:00:00Z", "--format", "json"]
    code, out, _ = invoke(str(tmp_path), *args, "--down", "2026-03-28T10:00:00Z/3h")
    assert code == 0
    data = json.loads(out)
    slots = data["slots"]
    assert [s["slot"] for s in slots] == sorted(s["slot"] for s in slots)
    keys = {"schedule", "slot", "fire_at", "outcome", "run", "reason", "detail"}
    assert all(keys <= set(s) for s in slots)
    nightly = [s["local"] for s in slots if s["schedule"] == "nightly"]
    assert nightly == ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00"]
    assert any(s["fire_at"] != s["slot"] for s in slots if s["schedule"] == "j")
    assert data["down"] == [
        {"from": "2026-03-28T10:00:00+00:00", "to": "2026-03-28T13:00:00+00:00"}
    ]
    assert data["transitions"][0]["offset_after"] == "+02:00"
    summary = data["summary"]
    assert summary["slots"] == summary["runs"] + sum(summary["skipped"].values())
    assert summary["skipped"]["misfire"] >= 1 and summary["catch_up"] == 1


def test_the_text_timeline_shows_the_stop_the_restart_and_the_dst_change(tmp_path: Path) -> None:
    docs = {"nightly": schedule("nightly", f'{{daily: {{at: "02:30"}}, {BERLIN}}}')}
    write_repo(tmp_path, docs)
    code, out, _ = invoke(
        str(tmp_path),
        "--from",
        "2026-03-28T00:00:00Z",
        "--to",
        "2026-03-30T12:00:00+02:00",
        "--down",
        "2026-03-28T23:00:00Z/2026-03-29T08:00:00+02:00",
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[1:] == [
        "2026-03-28T02:30:00+01:00  nightly  run 1 (schedule) succeeded",
        "-- 2026-03-28T23:00:00+00:00  serve stops",
        "-- 2026-03-29T03:00:00+02:00  Europe/Berlin changes from UTC+01:00 to UTC+02:00",
        "-- 2026-03-29T08:00:00+02:00  serve starts again",
        "2026-03-29T03:00:00+02:00  nightly  run 2 (catch-up) succeeded, started "
        "2026-03-29T08:00:00+02:00",
        "    missed; the one catch-up run for 1 missed slot(s)",
        "2026-03-30T02:30:00+02:00  nightly  run 3 (schedule) succeeded",
        "3 slots in 3 ledger entries: 3 runs (1 catch-up)",
    ]


def test_the_working_tree_is_simulated_by_default_and_rev_reads_a_commit(tmp_path: Path) -> None:
    write_repo(tmp_path, {"h": schedule("h", '{cron: "0 * * * *"}')})
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "hourly")
    write_repo(tmp_path, {"h": schedule("h", '{cron: "*/15 * * * *"}')})
    args = ["--from", "2026-06-15T10:00:30Z", "--to", "2026-06-15T12:00:30Z", "--format", "json"]
    _, worktree, _ = invoke(str(tmp_path), *args)
    _, head, _ = invoke(str(tmp_path), *args, "--rev", "HEAD")
    assert json.loads(worktree)["summary"]["runs"] == 8
    committed = json.loads(head)
    assert committed["summary"]["runs"] == 2
    assert committed["revision"] == git(tmp_path, "rev-parse", "HEAD")


def test_mistakes_are_one_clear_line_and_an_invalid_repo_shows_its_diagnostics(
    tmp_path: Path,
) -> None:
    write_repo(tmp_path, {"s": schedule("s", "{every: 1s}")})
    naive = run_cli(str(tmp_path), "--from", "2026-06-15T10:00:00", "--to", "2026-06-16T00:00Z")
    assert naive.returncode == 1 and "Traceback" not in naive.stderr
    assert "'2026-06-15T10:00:00' has no UTC offset" in naive.stderr.splitlines()[-1]
    big = run_cli(str(tmp_path), "--from", "2026-06-15T00:00:00Z", "--to", "2026-06-17T00:00Z")
    assert big.returncode == 1 and big.stdout == ""
    assert big.stderr.splitlines() == [
        'error: the range holds more than 100,000 slots (schedule "s" alone has 100,001 by '
        "2026-06-16T03:46:41+00:00): simulate a shorter range"
    ]
    bad = tmp_path / "bad"
    write_repo(bad, {"x": schedule("x", '{cron: "61 * * * *"}')})
    code, out, err = invoke(str(bad), "--from", "2026-06-15T00:00Z", "--to", "2026-06-16T00:00Z")
    assert code == 1 and "error[" in out and "nothing was simulated" in err
    code, out, _ = invoke(
        str(bad), "--from", "2026-06-15T00:00Z", "--to", "2026-06-16T00:00Z", "--format", "json"
    )
    assert code == 1 and json.loads(out)["errors"] >= 1


def test_the_worked_example_of_the_docs_prints_what_the_docs_show(tmp_path: Path) -> None:
    """docs/simulate.md: its repository files, its command and its output, kept in step."""
    text = (ROOT / "docs" / "simulate.md").read_text()
    files: dict[str, str] = {}
    command: list[str] = []
    shown: list[str] = []
    for block in text.split("```")[1::2]:
        _, _, body = block.partition("\n")
        first, _, rest = body.partition("\n")
        if first.startswith("# file: "):
            files[first.removeprefix("# file: ")] = rest
        elif first.startswith("$ reconciler simulate "):
            command = first.removeprefix("$ reconciler simulate ").split()
            shown = rest.rstrip("\n").splitlines()
    assert files and command and shown
    for rel, body in files.items():
        p = tmp_path / "example" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(body)
    assert command[0] == "example"
    code, out, err = invoke(str(tmp_path / "example"), *command[1:])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("working tree of ")
    assert lines[1:] == shown[1:]
