"""``GET /metrics`` of a real ``serve`` (fake executor): a read key is needed (header, Bearer or
``?key=``), and what it counts agrees with the state: slots with the ledger, runs by status with
the runs table, the queue and approvals waiting with the state now, the reconcile gauges with
the commits. Two replicas on one PostgreSQL state: their slot counters add up to the ledger."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.api.metrics import PrometheusTelemetry
from reconciler.clock import ManualClock, SystemClock
from reconciler.engine.firing import FiringLoop
from reconciler.engine.reconciling import ReconcileLoop
from reconciler.stores import NewRun, ReconcileAttempt, StateStore, open_store
from tests.daemon.conftest import Serve, apply_dir, schedule, until, write_repo
from tests.gitutil import git

from .promutil import Samples, error_code, git_repo, http, parse, soon, value

GATED = {
    "gated.yaml": """
        apiVersion: reconciler/v1
        kind: JobTemplate
        metadata: {name: gated}
        spec:
          type: orchestration
          playbook: playbooks/ping.yml
          approval: {required: true, approvers: [alice], count: 1}
        """,
}


IDLE = '{cron: "0 3 * * *"}'


def commit(repo: Path, schedules: dict[str, str]) -> None:
    """Add ``schedules`` (name -> YAML) to the repository in one commit."""
    for name, text in schedules.items():
        (repo / "schedules" / f"{name}.yaml").write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"schedules {', '.join(schedules)}")


def scrape(s: Serve) -> Samples:
    status, ctype, body = http(s.url + "/metrics", {"Authorization": f"Bearer {s.key}"})
    assert status == 200, body
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    return parse(body)


def ledger_counts(store: StateStore, name: str) -> dict[str, int]:
    """Slots of ``name`` in the ledger by outcome ('run' or the skip reason), ranges counted."""
    out: dict[str, int] = {}
    for e in store.list_slots(name, limit=100_000):
        key = "run" if e.run_id is not None else str(e.skip_reason)
        out[key] = out.get(key, 0) + e.count
    return out


def wait_for_ends(store: StateStore, end: str, names: list[str]) -> None:
    """Until every slot up to ``end`` (the last of every ``every: 1s``) is in the ledger and
    no run is queued or running: from then on nothing is fired or run any more."""
    last = datetime.fromisoformat(end) - timedelta(seconds=1)

    def done() -> bool:
        cursors = store.fire_cursors()
        if not all(n in cursors and cursors[n].last_slot > last for n in names):
            return False
        q = store.queue_counts()
        return q["queued"] == 0 and q["running"] == 0

    until(done, 40, "the schedules' last slots and runs")


def test_metrics_need_a_read_key_and_agree_with_the_ledger_the_runs_and_the_state(
    tmp_path: Path, serves: list[Serve]
) -> None:
    repo = git_repo(tmp_path / "repo", {"idle": schedule("idle", IDLE)}, GATED)
    state = str(tmp_path / "state.sqlite")
    t0 = time.time()
    s = Serve(repo, state, "--workers", "2", "--poll", "1h")
    serves.append(s)
    # a read key is needed, in any of the three places; nothing else will do
    status, _, body = http(s.url + "/metrics")
    assert status == 401 and error_code(body) == "unauthorized"
    for headers in ({"Authorization": "Bearer rk_wrong"}, {"Authorization": f"Basic {s.key}"}):
        status, _, body = http(s.url + "/metrics", headers)
        assert status == 401 and error_code(body) == "unauthorized", headers
    assert http(s.url + "/metrics", {"X-API-Key": s.key})[0] == 200
    assert http(s.url + f"/metrics?key={s.key}")[0] == 200
    assert http(s.url + "/metrics", {"authorization": f"bearer  {s.key} "})[0] == 200
    # looked for in that order: the first one presented is the one that counts
    bearer, wrong = {"Authorization": f"Bearer {s.key}"}, {"Authorization": "Bearer rk_wrong"}
    assert http(s.url + "/metrics", {"X-API-Key": s.key, **wrong})[0] == 200
    assert http(s.url + "/metrics", {"X-API-Key": "rk_wrong", **bearer})[0] == 401
    assert http(s.url + f"/metrics?key={s.key}", wrong)[0] == 401
    assert http(s.url + "/metrics?key=rk_wrong", bearer)[0] == 200

    # two schedules for a few seconds, one of them waiting for approval
    end = soon(6)
    tick = schedule("tick", f'{{every: 1s, end: "{end}"}}')
    commit(repo, {"tick": tick, "gate": tick.replace("tick", "gate").replace("ping", "gated")})
    with open_store(state) as store:
        wait_for_ends(store, end, ["tick", "gate"])
        future = datetime.now(UTC) + timedelta(hours=1)
        store.create_run(NewRun("ping", "cli", None, not_before=future), datetime.now(UTC))
        m = scrape(s)
        ticks, gates = ledger_counts(store, "tick"), ledger_counts(store, "gate")
        succeeded = len(store.list_runs(status="succeeded", template="ping", limit=10_000))
        queue = store.queue_counts()

    # every slot the ledger holds was counted by the replica that recorded it, by outcome
    assert ticks.get("run", 0) >= 3 and set(ticks) == {"run"}, ticks
    assert value(m, "reconciler_slots_total", schedule="tick") == sum(ticks.values())
    assert value(m, "reconciler_slots_total", schedule="tick", outcome="run") == ticks["run"]
    assert set(gates) == {"approval-pending"} and gates["approval-pending"] >= 3, gates
    assert value(
        m, "reconciler_slots_total", schedule="gate", outcome="skipped", reason="approval-pending"
    ) == sum(gates.values())
    # runs by template and status, and their durations, as the runs table has them
    assert succeeded == ticks["run"]
    assert value(m, "reconciler_runs_total", template="ping", status="succeeded") == succeeded
    assert value(m, "reconciler_runs_total") == succeeded
    assert value(m, "reconciler_run_duration_seconds_count", template="ping") == succeeded
    assert value(m, "reconciler_run_duration_seconds_sum", template="ping") > 0.04 * succeeded
    # one lag per ledger entry written, every one committed within a minute of its fire time
    lags = value(m, "reconciler_fire_lag_seconds_count")
    assert lags == sum(ticks.values()) + sum(gates.values())
    assert value(m, "reconciler_fire_lag_seconds_bucket", le="60.0") == lags
    # the gauges of the state, read at the scrape
    assert queue == {"queued": 1, "running": 0}
    assert value(m, "reconciler_runs", status="queued") == 1
    assert value(m, "reconciler_runs", status="running") == 0
    assert value(m, "reconciler_approvals_waiting") == 1
    assert value(m, "reconciler_schedules", state="awaiting-approval") == 1
    assert value(m, "reconciler_schedules", state="active") == 2
    assert value(m, "reconciler_reconcile_stalled") == 0
    first_ok = value(m, "reconciler_last_reconcile_success_timestamp_seconds")
    assert t0 - 1 <= first_ok <= time.time()
    assert value(m, "reconciler_webhook_deliveries_total") == 0

    # a run whose worker stopped renewing its lease is abandoned by the replica's reaper, and
    # counted by it
    with open_store(state) as other:
        held = other.create_run(
            NewRun("ping", "cli", None, claim_by="elsewhere:1:gone/w0/1", claim_seconds=0.5),
            datetime.now(UTC),
        )
        assert held is not None and held.status == "running"
    until(
        lambda: value(scrape(s), "reconciler_runs_total", status="abandoned") == 1,
        15,
        "the abandoned run counted",
    )
    with open_store(state) as store:
        gone = store.get_run(held.id)
        assert gone is not None and gone.status == "abandoned"
    m = scrape(s)
    assert value(m, "reconciler_runs_total", template="ping", status="abandoned") == 1
    assert value(m, "reconciler_run_duration_seconds_count") == succeeded  # it never ran here
    # a run that cannot be executed (its template is not applied) is recorded failed, and counted
    with open_store(state) as other:
        bad = other.create_run(NewRun("nosuch", "cli", None), datetime.now(UTC))
        assert bad is not None
    until(
        lambda: value(scrape(s), "reconciler_runs_total", template="nosuch", status="failed") == 1,
        15,
        "the failed run counted",
    )
    with open_store(state) as store:
        failed = store.get_run(bad.id)
        assert failed is not None and failed.status == "failed", failed

    # a commit that fails validation stalls; the next good one clears it
    (repo / "schedules" / "broken.yaml").write_text(schedule("broken", "{every: -1s}"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a broken schedule")
    until(lambda: value(scrape(s), "reconciler_reconcile_stalled") == 1, 15, "stalled = 1")
    m = scrape(s)
    assert value(m, "reconciler_last_reconcile_success_timestamp_seconds") == first_ok
    # (an ``end`` that has passed is an error too: the good commit moves both schedules on)
    (repo / "schedules" / "broken.yaml").unlink()
    for name in ("tick", "gate"):
        path = repo / "schedules" / f"{name}.yaml"
        path.write_text(
            path.read_text().replace(f'{{every: 1s, end: "{end}"}}', '{cron: "0 3 * * *"}')
        )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the broken schedule removed, the others daily")
    until(lambda: value(scrape(s), "reconciler_reconcile_stalled") == 0, 15, "stalled = 0")
    assert value(scrape(s), "reconciler_last_reconcile_success_timestamp_seconds") > first_ok


def test_a_restarted_replica_reports_the_stall_the_state_records_before_its_first_pass(
    store: StateStore, tmp_path: Path
) -> None:
    applied = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    store.apply_changes(0, "a" * 40, [], [], applied)
    store.record_attempt(ReconcileAttempt("b" * 40, applied + timedelta(hours=1), False, (), "x"))
    telemetry = PrometheusTelemetry()
    loop = ReconcileLoop(store, str(tmp_path), SystemClock(), telemetry=telemetry)
    thread = threading.Thread(target=loop.run_forever)  # no pass is requested
    thread.start()
    try:
        until(
            lambda: (
                value(parse(telemetry.render(store).decode()), "reconciler_reconcile_stalled") == 1
            ),
            5,
            "the stall reported",
        )
        m = parse(telemetry.render(store).decode())
        stamp = value(m, "reconciler_last_reconcile_success_timestamp_seconds")
        assert stamp == applied.timestamp()
        assert loop.passes == 0
    finally:
        loop.stop()
        thread.join(5)
    assert not thread.is_alive()
    # a good last attempt: its time is the last success, and nothing is stalled
    store.record_attempt(ReconcileAttempt("c" * 40, applied + timedelta(hours=2), True))
    fresh = PrometheusTelemetry()
    ReconcileLoop(store, str(tmp_path), SystemClock(), telemetry=fresh)._restore()
    m = parse(fresh.render(store).decode())
    assert value(m, "reconciler_reconcile_stalled") == 0
    assert (
        value(m, "reconciler_last_reconcile_success_timestamp_seconds")
        == (applied + timedelta(hours=2)).timestamp()
    )


def test_two_replicas_on_postgresql_count_every_slot_once_between_them(
    tmp_path: Path, pg_url: str, serves: list[Serve]
) -> None:
    repo = git_repo(tmp_path / "repo", {"idle": schedule("idle", IDLE)}, {})
    with ThreadPoolExecutor(2) as pool:  # both start at once
        started = [pool.submit(Serve, repo, pg_url, "--workers", "1", "--poll", "1h") for _ in "ab"]
    serves.extend(f.result() for f in started if f.exception() is None)  # stopped at the end
    replicas = [f.result() for f in started]
    # the replica that does not apply the commit arms the schedules at its next housekeeping
    # (within 5 s): from then on both fire them, each slot recorded by the one that wins it
    end = soon(9)
    commit(repo, {f"r{i}": schedule(f"r{i}", f'{{every: 1s, end: "{end}"}}') for i in range(3)})
    names = [f"r{i}" for i in range(3)]
    with open_store(pg_url) as store:
        wait_for_ends(store, end, names)
        scraped = [scrape(r) for r in replicas]
        ledger = {n: sum(ledger_counts(store, n).values()) for n in names}
        succeeded = len(store.list_runs(status="succeeded", limit=10_000))
    assert all(n >= 3 for n in ledger.values()), ledger
    for n in names:
        counted = [value(m, "reconciler_slots_total", schedule=n) for m in scraped]
        assert sum(counted) == ledger[n], (n, counted, ledger[n])
    assert sum(value(m, "reconciler_runs_total", status="succeeded") for m in scraped) == succeeded
    # the gauges of the state are the same whichever replica is asked
    assert {value(m, "reconciler_runs", status="queued") for m in scraped} == {0}


def test_every_metric_is_documented_and_every_documented_metric_exists(tmp_path: Path) -> None:
    telemetry = PrometheusTelemetry()
    telemetry.slot("s", "skipped", "misfire", 3)
    telemetry.fire_lag(0.002)
    telemetry.run_finished("t", "succeeded", 1.5)
    telemetry.reconciled(True, time.time())
    telemetry.webhook("github", "accepted")
    with open_store(str(tmp_path / "state.sqlite")) as store:
        text = telemetry.render(store).decode()
    m = parse(text)
    assert value(m, "reconciler_slots_total", schedule="s", reason="misfire") == 3
    assert value(m, "reconciler_fire_lag_seconds_bucket", le="0.0025") == 1
    assert value(m, "reconciler_fire_lag_seconds_bucket", le="0.001") == 0
    assert "_created" not in text
    exposed = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(reconciler_[a-z_]+)` \|", doc, flags=re.M))
    assert exposed == documented


def test_the_firing_loop_counts_a_range_entry_by_its_slots_and_lags_once_per_entry_written(
    tmp_path: Path, store: StateStore
) -> None:
    t0 = datetime(2026, 6, 15, 10, 0, 5, tzinfo=UTC)
    docs = {
        "s": schedule("s", "{every: 10s}"),
        "p": schedule("p", "{every: 10s}", enabled="false"),
    }
    apply_dir(store, write_repo(tmp_path / "repo", docs), t0)
    clock = ManualClock(t0)
    telemetry = PrometheusTelemetry()
    loop = FiringLoop(store, clock, telemetry=telemetry)
    loop.reload()
    clock.set(t0 + timedelta(hours=1))  # an outage of an hour: 359 slots missed, one on time
    loop.step()
    m = parse(telemetry.render(store).decode())
    s, p = ledger_counts(store, "s"), ledger_counts(store, "p")
    # the slots of the last minute were late, not missed: one ran, the others overlapped it
    assert s == {"misfire": 354, "overlap": 5, "run": 1} and p == {"paused": 360}
    assert max(e.count for e in store.list_slots("s")) == 354  # one range entry
    for reason, n in s.items():
        outcome = {"outcome": "run"} if reason == "run" else {"reason": reason}
        assert value(m, "reconciler_slots_total", schedule="s", **outcome) == n
    assert value(m, "reconciler_slots_total", schedule="p", outcome="skipped") == 360
    assert value(m, "reconciler_fire_lag_seconds_count") == 2
    assert value(m, "reconciler_fire_lag_seconds_bucket", le="60.0") == 0  # an hour late
    assert value(m, "reconciler_runs", status="queued") == 1
    assert value(m, "reconciler_schedules", state="paused") == 1
    # the next slots, on time: one more run, a lag of 0 s each (the clock stands still)
    due = loop.next_deadline()
    assert due is not None
    clock.set(due)
    loop.step()
    m = parse(telemetry.render(store).decode())
    assert ledger_counts(store, "s")["run"] == 2
    assert value(m, "reconciler_slots_total", schedule="s", outcome="run") == 2
    assert value(m, "reconciler_fire_lag_seconds_bucket", le="0.0005") == 2
