"""What the API shares with the CLI and the store, checked without a daemon: ``reconciler run``
names every problem of a request in one line (the trigger's checks are its checks), ``cancel``
is one function for both, and ``create_run_once`` / ``page_runs`` on both backends."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import dedent

import pytest

from reconciler.cli.main import main
from reconciler.engine.keys import create_key
from reconciler.engine.triggering import AppliedCache, GroupCommit, TriggerRequest, trigger
from reconciler.errors import UsageError
from reconciler.stores import StateStore, open_store
from reconciler.stores.base import ChecksFailed, IdempotencyKey, IdempotentRun, NewRun, RunCheck
from tests.daemon.conftest import apply_dir, make_repo, schedule, write_repo
from tests.gitutil import git

from .conftest import TEMPLATES

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The real entry point in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def _applied(tmp_path: Path) -> str:
    state = str(tmp_path / "state.sqlite")
    docs = {name: dedent(text).lstrip() for name, text in TEMPLATES.items()}
    root = write_repo(tmp_path / "repo", {"nightly": schedule("nightly", "{every: 1h}"), **docs})
    with open_store(state) as store:
        apply_dir(store, root, datetime.now(UTC))
    return state


def test_run_names_every_variable_and_target_problem_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = _applied(tmp_path)
    args = ["run", "deploy", "--server", "web-9", "--role", "nope", "--env", "qa"]
    code, _, err = _cli(capsys, *args, "--var", "colour=red", "--state", state)
    assert code == 1
    (line,) = err.strip().splitlines()
    for part in (
        'required variable "version"',
        'unknown variable "colour"',
        'unknown server "web-9"',
        'unknown role "nope"',
        'unknown environment "qa"',
    ):
        assert part in line, (part, line)


def test_cancel_is_one_function_for_the_cli_and_the_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = _applied(tmp_path)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    code, out, _ = _cli(capsys, "run", "ping", "--at", later, "--state", state, "--format", "json")
    assert code == 0, out
    run_id = json.loads(out)["run"]["id"]
    code, out, _ = _cli(capsys, "cancel", str(run_id), "--state", state)
    assert code == 0 and f"run {run_id} cancelled" in out
    code, _, err = _cli(capsys, "cancel", str(run_id), "--state", state)
    assert code == 1 and "already ended: cancelled" in err
    code, _, err = _cli(capsys, "cancel", "999", "--state", state)
    assert code == 1 and "no run 999" in err


def _api_run(version: str) -> NewRun:
    return NewRun(template="deploy", trigger="api", commit=None, variables={"version": version})


def test_an_idempotency_key_replays_refuses_another_body_and_expires(store: StateStore) -> None:
    key = IdempotencyKey("ci", "k1", "sha256:a")
    first = store.create_run_once(_api_run("1"), key, NOW)
    assert first.outcome == "created"
    again = store.create_run_once(_api_run("1"), key, NOW + timedelta(hours=23))
    assert again == IdempotentRun("replayed", first.run)
    other = store.create_run_once(_api_run("2"), IdempotencyKey("ci", "k1", "sha256:b"), NOW)
    assert other.outcome == "conflict" and other.run.id == first.run.id
    elsewhere = store.create_run_once(_api_run("1"), IdempotencyKey("cd", "k1", "sha256:a"), NOW)
    assert elsewhere.outcome == "created" and elsewhere.run.id != first.run.id
    expired = store.create_run_once(_api_run("1"), key, NOW + timedelta(hours=25))
    assert expired.outcome == "created" and expired.run.id not in (first.run.id, elsewhere.run.id)
    assert len(store.list_runs(template="deploy")) == 3


def test_two_connections_racing_on_one_key_create_one_run(state_url: str) -> None:
    stores = [open_store(state_url, lock_timeout=10) for _ in range(4)]
    try:
        for round_ in range(5):
            barrier = threading.Barrier(len(stores))
            got: list[IdempotentRun] = []

            def go(
                s: StateStore,
                r: int = round_,
                barrier: threading.Barrier = barrier,
                got: list[IdempotentRun] = got,
            ) -> None:
                barrier.wait(10)
                key = IdempotencyKey("ci", f"race-{r}", "sha256:x")
                got.append(s.create_run_once(_api_run(f"r{r}"), key, NOW))

            threads = [threading.Thread(target=go, args=(s,)) for s in stores]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sorted(g.outcome for g in got) == ["created"] + ["replayed"] * 3
            assert len({g.run.id for g in got}) == 1
        runs = stores[0].list_runs(template="deploy", limit=100)
        assert len(runs) == 5
    finally:
        for s in stores:
            s.close()


def test_page_runs_goes_back_by_id_with_filters(store: StateStore) -> None:
    ids = [store.create_run(_api_run(str(i)), NOW) for i in range(5)]
    cli_run = store.create_run(NewRun(template="deploy", trigger="cli", commit=None), NOW)
    assert cli_run is not None and all(r is not None for r in ids)
    first = store.page_runs(trigger="api", limit=2)
    assert [r.id for r in first] == [ids[4].id, ids[3].id]  # type: ignore[union-attr]
    rest = store.page_runs(trigger="api", before=first[-1].id, limit=10)
    assert [r.id for r in rest] == [r.id for r in reversed(ids[:3])]  # type: ignore[union-attr]
    assert [r.id for r in store.page_runs(trigger="cli")] == [cli_run.id]
    assert store.page_runs(template="nope") == []


def test_a_group_commit_writes_many_runs_in_one_transaction_and_replays_within_it(
    store: StateStore,
) -> None:
    key = IdempotencyKey("ci", "double-click", "sha256:a")
    got = store.create_runs(
        [(_api_run("1"), key), (_api_run("1"), key), (_api_run("2"), None), (_api_run("3"), None)],
        NOW,
    )
    assert [g.outcome for g in got] == ["created", "replayed", "created", "created"]
    assert got[0].run == got[1].run and len({g.run.id for g in got}) == 3
    assert [g.run.variables["version"] for g in got] == ["1", "1", "2", "3"]
    assert len(store.list_runs(template="deploy")) == 3


def test_the_trigger_cache_follows_every_apply(tmp_path: Path) -> None:
    state = str(tmp_path / "state.sqlite")
    docs = {name: dedent(text).lstrip() for name, text in TEMPLATES.items()}
    root = make_repo(tmp_path, {"nightly": schedule("nightly", "{every: 1h}"), **docs})
    cache = AppliedCache()
    with open_store(state) as store:
        apply_dir(store, root, datetime.now(UTC))
        key, _ = create_key(store, "ci", ["trigger"], ["open"], None, datetime.now(UTC))
        first = trigger(store, key, TriggerRequest("open"), datetime.now(UTC), cache=cache)
        assert first.run.commit == git(root, "rev-parse", "HEAD")
        edited = docs["open"].replace("allowNewVariables: true", "allowNewVariables: false")
        (root / "schedules" / "open.yaml").write_text(edited)
        git(root, "commit", "-qam", "no new variables")
        apply_dir(store, root, datetime.now(UTC))
        with pytest.raises(UsageError, match='unknown variable "colour"'):
            trigger(store, key, TriggerRequest("open", {"colour": "red"}), NOW, cache=cache)
        second = trigger(store, key, TriggerRequest("open"), datetime.now(UTC), cache=cache)
        assert second.run.commit == git(root, "rev-parse", "HEAD") != first.run.commit


def test_a_group_commit_answers_each_writer_and_a_bad_run_fails_only_itself(
    state_url: str,
) -> None:
    group = GroupCommit(lambda: open_store(state_url, lock_timeout=10))
    results: dict[int, object] = {}

    def write(i: int) -> None:
        bad = i == 3
        run = NewRun(
            template="deploy",
            trigger="bogus" if bad else "api",  # type: ignore[arg-type]
            commit=None,
            variables={"version": str(i)},
        )
        try:
            results[i] = group.write(run, None, NOW).run.variables["version"]
        except ValueError as e:
            results[i] = e

    threads = [threading.Thread(target=write, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    group.close()
    assert isinstance(results.pop(3), ValueError)
    assert results == {i: str(i) for i in range(12) if i != 3}
    with open_store(state_url) as store:
        assert len(store.list_runs(template="deploy", limit=100)) == 11


def test_a_run_is_written_only_if_its_check_still_holds_in_the_writing_transaction(
    state_url: str,
) -> None:
    """``create_runs`` verifies each run's :class:`RunCheck` (the serial it was checked
    against, its key not revoked) in the transaction that writes it: one failed check writes
    nothing of the batch and names the failures; the group commit fails those runs alone."""
    with open_store(state_url, lock_timeout=10) as store:
        live, _ = create_key(store, "live", ["trigger"], ["deploy"], None, NOW)
        old, _ = create_key(store, "old", ["trigger"], ["deploy"], None, NOW)
        assert store.revoke_api_key("old", NOW)
        serial = store.serial()
        ok, stale = RunCheck(serial, live.key_hash), RunCheck(serial - 1, live.key_hash)
        revoked = RunCheck(serial, old.key_hash)
        with pytest.raises(ChecksFailed) as failed:
            store.create_runs(
                [(_api_run("1"), None), (_api_run("2"), None), (_api_run("3"), None)],
                NOW,
                [ok, stale, revoked],
            )
        assert failed.value.failed == {1: "stale", 2: "revoked"}
        assert store.list_runs(template="deploy") == []
    group = GroupCommit(lambda: open_store(state_url, lock_timeout=10))
    futures = [
        group.submit(_api_run(str(i)), None, NOW, check)
        for i, check in enumerate([ok, stale, None, revoked, ok])
    ]
    answers: list[object] = []
    for f in futures:
        try:
            answers.append(f.result(30).run.variables["version"])
        except ChecksFailed as e:
            answers.append(e.failed)
    group.close()
    assert answers == ["0", {0: "stale"}, "2", {0: "revoked"}, "4"]
    with open_store(state_url) as store:
        assert len(store.list_runs(template="deploy")) == 3
