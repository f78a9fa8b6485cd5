"""Plan and apply through the engine and the command line, on SQLite and PostgreSQL: applying
twice, saved plans (stale, edited, damaged), exit codes, a revision that fails validation,
confirmation, ``schedules`` and ``plan --base``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from reconciler.planning import planfile
from reconciler.stores import StateStore, open_store

from .conftest import NOW, CliRun, GitRepo, apply_repo, plan_repo

BROKEN_SCHEDULE = """apiVersion: reconciler/v1
kind: Schedule
metadata:
  name: broken
spec:
  template: no-such-template
  owner: alice
  when: {daily: {at: "25:00"}}
"""


def snapshot_of(url: str) -> tuple[int, list[tuple[str, str, str]], int]:
    """Serial, every object (kind, name, hash) and the history length of a state."""
    with open_store(url) as s:
        objs = [(o.kind, o.name, o.content_hash) for o in s.list_objects()]
        return s.serial(), objs, len(s.history())


def test_applying_the_same_revision_twice_changes_nothing(repo: GitRepo, store: StateStore) -> None:
    first = apply_repo(store, repo)
    objects = store.list_objects()
    again = plan_repo(store, repo)
    assert again.empty and again.changes == ()
    assert apply_repo(store, repo) == first == store.serial()
    assert store.list_objects() == objects
    assert len(store.history()) == 1


def test_the_applied_commit_sha_is_recorded_in_the_state_and_its_history(
    repo: GitRepo, store: StateStore
) -> None:
    apply_repo(store, repo)
    repo.write(
        "schedules/web-logs.yaml",
        repo.path.joinpath("schedules/web-logs.yaml").read_text().replace("15 */6", "45 */6"),
    )
    second = repo.commit("move web-logs")
    apply_repo(store, repo)
    assert store.info().revision == second
    assert store.history()[0].revision == second
    assert store.get_object("Schedule", "web-logs").revision == second  # type: ignore[union-attr]
    assert store.get_object("Schedule", "backup-nightly").revision != second  # type: ignore[union-attr]


def test_apply_and_plan_work_through_the_cli_with_detailed_exit_codes(
    repo: GitRepo, state_url: str, cli: CliRun
) -> None:
    first = cli("plan", str(repo.path), "--state", state_url, "--detailed-exitcode")
    assert first.code == 2, first.both
    assert "Plan: 7 to create, 0 to update, 0 to delete, 0 blocked." in first.out
    applied = cli("apply", str(repo.path), "--state", state_url, "--yes")
    assert applied.code == 0, applied.both
    assert f"revision {repo.head[:12]}, state serial 1" in applied.out
    quiet = cli("plan", str(repo.path), "--state", state_url, "--detailed-exitcode")
    assert (quiet.code, quiet.err) == (0, ""), quiet.both
    assert "No changes." in quiet.out
    typo = cli("plan", str(repo.path), "--state", state_url, "--detailed-exitcode", "--bogus")
    assert typo.code == 1, "a usage error must not read as 'changes' (2)"
    missing = cli("plan", str(repo.path / "nope"), "--state", state_url, "--detailed-exitcode")
    assert missing.code == 1
    assert snapshot_of(state_url)[0] == 1


def test_plan_json_has_the_contract_keys_and_offsets_on_instants(
    repo: GitRepo, state_url: str, cli: CliRun
) -> None:
    r = cli("plan", str(repo.path), "--state", state_url, "--format", "json")
    assert r.code == 0, r.both
    doc = json.loads(r.out)
    assert doc["revision"] == repo.head
    assert doc["summary"] == {"create": 7, "update": 0, "delete": 0, "blocked": 0}
    for c in doc["changes"]:
        assert {"action", "kind", "name", "reason", "diff"} <= set(c)
    sched = next(c for c in doc["changes"] if c["name"] == "backup-nightly")["schedule"]
    assert sched["state"] == "active" and sched["servers"] == ["db-1"]
    assert all(t.endswith(("+01:00", "+02:00")) for t in sched["next_after"])


def test_a_saved_plan_applies_and_records_its_revision(
    repo: GitRepo, state_url: str, cli: CliRun, tmp_path: Path
) -> None:
    f = tmp_path / "plan.json"
    made = cli("plan", str(repo.path), "--state", state_url, "--out", str(f))
    assert made.code == 0 and f.exists(), made.both
    assert f"apply it with: reconciler apply --plan {f}" in made.out
    applied = cli("apply", "--plan", str(f), "--state", state_url)
    assert applied.code == 0, applied.both
    serial, objects, history = snapshot_of(state_url)
    # 7 documents, the resolved server list and where the repository is (for runs)
    assert (serial, len(objects), history) == (1, 9, 1)
    with open_store(state_url) as s:
        assert s.info().revision == repo.head


def test_a_stale_saved_plan_is_refused_naming_both_serials_and_changes_nothing(
    repo: GitRepo, state_url: str, cli: CliRun, tmp_path: Path
) -> None:
    f = tmp_path / "plan.json"
    assert cli("plan", str(repo.path), "--state", state_url, "--out", str(f)).code == 0
    assert cli("apply", str(repo.path), "--state", state_url, "--yes").code == 0
    before = snapshot_of(state_url)
    r = cli("apply", "--plan", str(f), "--state", state_url)
    assert r.code == 1
    assert "serial 0" in r.err and "serial 1" in r.err and "Make a new plan" in r.err
    assert "Traceback" not in r.both and len(r.err.strip().splitlines()) == 1
    assert snapshot_of(state_url) == before


DAMAGES: list[tuple[str, Callable[[str], str], str]] = [
    (
        "body edited",
        lambda t: t.replace('retention\\":\\"14d', 'retention\\":\\"99d'),
        "was changed",
    ),
    ("serial edited", lambda t: t.replace('"base_serial": 0', '"base_serial": 1'), "was changed"),
    ("truncated", lambda t: t[: len(t) // 2], "is not a plan file"),
    ("binary", lambda t: "\x00\xff garbage", "is not a plan file"),
    ("foreign JSON", lambda t: json.dumps({"format": "other"}), "is not a reconciler plan file"),
]


def test_a_saved_plan_that_was_edited_or_damaged_is_refused_and_changes_nothing(
    repo: GitRepo, state_url: str, cli: CliRun, tmp_path: Path
) -> None:
    with open_store(state_url) as s:
        text = planfile.dumps(plan_repo(s, repo), str(repo.path))
    before = snapshot_of(state_url)
    for what, damage, message in DAMAGES:
        bad = damage(text)
        assert bad != text, what
        f = tmp_path / "plan.json"
        f.write_text(bad)
        r = cli("apply", "--plan", str(f), "--state", state_url)
        assert r.code == 1, (what, r.both)
        assert message in r.err and "Traceback" not in r.both, (what, r.err)
        assert snapshot_of(state_url) == before, what


def test_a_revision_that_fails_validation_plans_nothing_and_leaves_the_state_alone(
    repo: GitRepo, state_url: str, cli: CliRun
) -> None:
    assert cli("apply", str(repo.path), "--state", state_url, "--yes").code == 0
    before = snapshot_of(state_url)
    repo.write("schedules/broken.yaml", BROKEN_SCHEDULE)
    repo.commit("broken")
    for args in (["plan", "--detailed-exitcode"], ["apply", "--yes"]):
        r = cli(*args, str(repo.path), "--state", state_url)
        assert r.code == 1, r.both
        assert "schedules/broken.yaml:" in r.out and "error[" in r.out
        assert "nothing was planned and the applied state stays in force" in r.err
    r = cli("plan", str(repo.path), "--state", state_url, "--format", "json")
    doc = json.loads(r.out)
    assert r.code == 1 and doc["errors"] >= 1
    assert {"path", "line", "column", "severity", "code", "message"} <= set(doc["diagnostics"][0])
    assert snapshot_of(state_url) == before


def test_apply_without_yes_refuses_when_stdin_is_not_a_terminal(
    repo: GitRepo, state_url: str, cli: CliRun
) -> None:
    assert cli("apply", str(repo.path), "--state", state_url, "--yes").code == 0
    repo.write("schedules/web-logs.yaml", "")  # an empty file: the schedule is removed
    repo.commit("remove web-logs")
    before = snapshot_of(state_url)
    r = cli("apply", str(repo.path), "--state", state_url, stdin="y\n")
    assert r.code == 1
    assert "pass --yes" in r.err and "Traceback" not in r.both
    assert snapshot_of(state_url) == before


def test_apply_without_yes_creates_no_state_when_it_refuses(
    repo: GitRepo, cli: CliRun, tmp_path: Path
) -> None:
    state = tmp_path / "fresh" / "state.db"
    r = cli("apply", str(repo.path), "--state", str(state))
    assert r.code == 1 and not state.exists() and not state.parent.exists()


def test_plan_and_schedules_do_not_create_a_missing_sqlite_state(
    repo: GitRepo, cli: CliRun, tmp_path: Path
) -> None:
    state = tmp_path / "later" / "state.db"
    r = cli("plan", str(repo.path), "--state", f"sqlite:///{state}", "--detailed-exitcode")
    assert r.code == 2 and "against state serial 0" in r.out, r.both
    s = cli("schedules", "--state", str(state), "--format", "json")
    assert (s.code, json.loads(s.out)) == (0, {"schedules": []})
    assert not state.exists() and not state.parent.exists()


def test_plan_base_diffs_two_revisions_without_creating_the_state(
    repo: GitRepo, cli: CliRun, tmp_path: Path
) -> None:
    base = repo.head
    repo.write("schedules/web-logs.yaml", "")
    head = repo.commit("remove web-logs")
    state = tmp_path / "state" / "state.db"
    r = cli(
        "plan",
        str(repo.path),
        "--base",
        "HEAD~1",
        "--rev",
        "HEAD",
        "--state",
        str(state),
        "--format",
        "json",
        "--detailed-exitcode",
    )
    assert r.code == 2, r.both
    doc = json.loads(r.out)
    assert (doc["revision"], doc["base_revision"]) == (head, base)
    assert [(c["action"], c["name"]) for c in doc["changes"]] == [("delete", "web-logs")]
    text = cli("plan", str(repo.path), "--base", base, "--state", str(state))
    assert f"Changes from {base[:12]} to {head[:12]}" in text.out
    assert not state.exists() and not state.parent.exists()
    same = cli("plan", str(repo.path), "--base", "HEAD", "--detailed-exitcode")
    assert same.code == 0 and "No changes" in same.out
    refused = cli("plan", str(repo.path), "--base", base, "--out", str(tmp_path / "p"))
    assert refused.code == 1 and "--out cannot be used with --base" in refused.err


def test_schedules_json_has_the_contract_keys_states_and_offsets(
    repo: GitRepo, state_url: str, cli: CliRun
) -> None:
    repo.write(
        "schedules/deploy.yaml",
        "apiVersion: reconciler/v1\nkind: Schedule\nmetadata: {name: deploy-web-weekly}\n"
        "spec:\n  template: deploy-web\n  owner: bob\n  variables: {release: stable}\n"
        "  when: {weekly: {days: [tue], at: '06:30'}}\n",
    )
    repo.write(
        "schedules/paused.yaml",
        "apiVersion: reconciler/v1\nkind: Schedule\nmetadata: {name: paused-one}\n"
        "spec:\n  template: backup\n  owner: alice\n  enabled: false\n"
        "  pauseNote: waiting for disks\n  when: {every: 1h}\n",
    )
    repo.commit("more schedules")
    assert cli("apply", str(repo.path), "--state", state_url, "--yes").code == 0
    r = cli("schedules", "--state", state_url, "--format", "json", "--upcoming", "5")
    assert r.code == 0, r.both
    rows = {s["name"]: s for s in json.loads(r.out)["schedules"]}
    assert sorted(rows) == ["backup-nightly", "deploy-web-weekly", "paused-one", "web-logs"]
    for row in rows.values():
        assert {"name", "template", "state", "next", "last_run"} <= set(row)
        assert row["last_run"] is None
    assert rows["deploy-web-weekly"]["state"] == "awaiting-approval"
    assert rows["paused-one"]["state"] == "paused"
    assert rows["web-logs"]["state"] == "active" and len(rows["web-logs"]["next"]) == 5
    assert all(t[-6:] in ("+01:00", "+02:00") for t in rows["backup-nightly"]["next"])
    one = cli("schedules", "--state", state_url, "--format", "json", "--upcoming", "1")
    assert [len(s["next"]) for s in json.loads(one.out)["schedules"]] == [1, 0, 0, 1]
    text = cli("schedules", "--state", state_url)
    assert "awaiting-approval" in text.out and "[waiting for disks]" in text.out


def test_engine_plan_against_a_state_uses_its_serial(repo: GitRepo, store: StateStore) -> None:
    assert plan_repo(store, repo).base_serial == 0
    apply_repo(store, repo)
    assert plan_repo(store, repo, now=NOW).base_serial == store.serial() == 1
