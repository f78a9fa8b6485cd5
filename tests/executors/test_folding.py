"""Pure parts: golden event folds, drift summaries, the data-only YAML writer, redaction,
static playbook inspection and the scripted fake."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from reconciler.executors.fake import FakeExecutor, Script
from reconciler.executors.folding import PhaseResult, drift_summary, fold_events
from reconciler.executors.playbooks import real_tasks
from reconciler.executors.spec import HostOutcome, Progress, RunOutcome, RunRequest
from reconciler.executors.worker import Redactor, extravars_yaml, wanted, wrap_unsafe_json

from .conftest import write_project

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("RECONCILER_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("case", sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()))
def test_recorded_runner_events_fold_into_the_expected_host_results(case: str) -> None:
    folder = GOLDEN / case
    params = json.loads((folder / "params.json").read_text())
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    got = asdict(fold_events(events, params["hosts"], check=params["check"]))
    got = json.loads(json.dumps(got))
    expected_file = folder / "expected.json"
    if UPDATE or not expected_file.exists():
        expected_file.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
        if not UPDATE:
            pytest.fail(f"{expected_file} was missing and has been written: review it")
    assert got == json.loads(expected_file.read_text())


def test_the_golden_check_run_reports_drift_unknown_for_failed_and_unreachable_hosts() -> None:
    case = GOLDEN / "check_loop_nolog_failed_unreachable"
    expected = json.loads((case / "expected.json").read_text())
    hosts = expected["hosts"]
    assert [hosts[h]["drifted"] for h in ("h1", "h2", "h3")] == [True, None, None]
    assert hosts["h3"]["status"] == "unreachable" and hosts["h2"]["status"] == "failed"
    assert any(d["hidden"] for d in hosts["h1"]["drift"])  # no_log: changed, details hidden
    kinds = {(f["kind"], f["task"]) for f in expected["findings"]}
    assert kinds == {("cannot-simulate", "run a command"), ("runs-for-real", "really runs")}
    syntax = json.loads((GOLDEN / "syntax_error/expected.json").read_text())
    assert syntax["error"].startswith("[ERROR]: YAML parsing failed")


def _host(name: str, status: str = "ok", drifted: bool | None = False) -> HostOutcome:
    return HostOutcome(name=name, status=status, ok=1, drifted=drifted)  # type: ignore[arg-type]


def test_drift_summary_says_found_fixed_still_present_unknown_and_in_sync() -> None:
    check = PhaseResult(
        hosts={
            "a": _host("a"),
            "b": _host("b", "changed", True),
            "c": _host("c", "changed", True),
            "d": _host("d", "unreachable", None),
            "e": _host("e", "changed", True),
        }
    )
    assert drift_summary(check) == {
        "a": "in-sync",
        "b": "found",
        "c": "found",
        "d": "unknown",
        "e": "found",
    }
    fix = PhaseResult(
        hosts={"b": _host("b", "changed"), "c": _host("c", "failed"), "e": _host("e", "changed")}
    )
    again = PhaseResult(hosts={"b": _host("b"), "e": _host("e", "changed", True)})
    assert drift_summary(check, fix, again) == {
        "a": "in-sync",
        "b": "fixed",
        "c": "still-present",
        "d": "unknown",
        "e": "still-present",
    }


def test_untrusted_values_are_written_as_unsafe_yaml_and_trusted_ones_plain() -> None:
    bad = "{{ lookup('pipe','id') }}"
    text = extravars_yaml(
        {"plain": "{{ 1 + 1 }}", "both": "git"},
        {"both": bad, "nested": {bad: [bad, 3, True, None]}},
    )
    assert "plain: '{{ 1 + 1 }}'" in text
    assert text.count("!unsafe") == 5  # both keys, the value, the nested key and list item

    class Loader(yaml.SafeLoader):
        pass

    loader = Loader
    loader.add_constructor("!unsafe", lambda ld, node: ("UNSAFE", ld.construct_scalar(node)))
    data = yaml.load(text, Loader=loader)
    assert data[("UNSAFE", "both")] == ("UNSAFE", bad)
    assert data["plain"] == "{{ 1 + 1 }}"
    assert wrap_unsafe_json({"k": [bad, 1]}) == {"k": [{"__ansible_unsafe": bad}, 1]}


def test_redaction_replaces_every_known_secret_in_nested_values_and_keys() -> None:
    redact = Redactor({"a": "hunter2", "b": "hunter2-long", "empty": ""})
    assert redact({"x hunter2-long": ["pw=hunter2", 1]}) == {"x ********": ["pw=********", 1]}
    assert redact.text("nothing") == "nothing"


def test_static_inspection_finds_check_mode_false_in_plays_blocks_includes_and_roles(
    tmp_path: Path,
) -> None:
    project = write_project(
        tmp_path,
        {
            "site.yml": """
- hosts: all
  tasks:
    - name: fine
      debug: msg=x
    - block:
        - name: in block
          command: "true"
      check_mode: false
    - import_tasks: more.yml
  roles:
    - web
- hosts: all
  check_mode: no
  tasks:
    - name: whole play
      ping:
- import_playbook: other.yml
""",
            "more.yml": "- name: included\n  command: 'true'\n  check_mode: '{{ x }}'\n",
            "roles/web/tasks/main.yml": "- name: from role\n  shell: x\n  check_mode: false\n",
            "other.yml": "- hosts: all\n  tasks:\n    - include_tasks: '{{ f }}'\n",
        },
    )
    found, unknown = real_tasks(str(project), "site.yml")
    assert [(t.task, t.path) for t in found] == [
        ("in block", "site.yml"),
        ("included", "more.yml"),
        ("from role", os.path.join("roles", "web", "tasks", "main.yml")),
        ("whole play", "site.yml"),
    ]
    assert found[1].reason == "check_mode is templated"
    assert unknown == ["other.yml: include '{{ f }}'"]


def test_the_fake_executor_replays_its_script_and_can_be_cancelled() -> None:
    outcome = RunOutcome(run_id="", status="succeeded", message="done")
    step = Progress("", "run", "runner_on_ok", host="h", task="t", status="ok")
    fake = FakeExecutor(
        {"slow": Script(outcome, delay=30)}, default=Script(outcome, [step], ["line"])
    )
    logged: list[str] = []
    quick = fake.start(RunRequest("r1", "/p", "site.yml"), on_log=logged.append)
    assert quick.wait(1) == RunOutcome(run_id="r1", status="succeeded", message="done")
    assert [p.run_id for p in quick.events()] == ["r1"]
    assert logged == ["line"] and quick.log_text() == "line\n"
    slow = fake.start(RunRequest("slow", "/p", "site.yml"))
    with pytest.raises(TimeoutError):
        slow.wait(0.05)
    slow.cancel()
    assert slow.wait(5).status == "cancelled"
    assert [r.run_id for r in fake.requests] == ["r1", "slow"]


def test_the_worker_sends_every_event_the_parent_folds_or_logs() -> None:
    """Events the worker drops (no text, not folded) change nothing in the folded result."""
    for case in sorted(p for p in GOLDEN.iterdir() if p.is_dir()):
        events = [json.loads(line) for line in (case / "events.jsonl").read_text().splitlines()]
        params = json.loads((case / "params.json").read_text())
        kept = [e for e in events if wanted(e)]
        full = fold_events(events, params["hosts"], check=params["check"])
        assert fold_events(kept, params["hosts"], check=params["check"]) == full
    assert not wanted({"event": "runner_on_start", "stdout": "", "host": "a"})
    assert not wanted({"event": "playbook_on_start", "stdout": ""})
    assert wanted({"event": "runner_on_ok", "stdout": "", "host": "a"})
    assert wanted({"event": "runner_item_on_ok", "stdout": ""})
    assert wanted({"event": "playbook_on_stats", "stdout": ""})
    assert wanted({"event": "verbose", "stdout": "ERROR! bad"})


def test_a_local_connection_server_without_an_interpreter_gets_the_controllers_python() -> None:
    from reconciler.executors.spec import target_host
    from reconciler.model.inventory import Server

    local = target_host(Server(name="a", host="127.0.0.1", vars={"ansible_connection": "local"}))
    assert local.vars["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
    chosen = target_host(
        Server(
            name="b",
            vars={"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"},
        )
    )
    assert chosen.vars["ansible_python_interpreter"] == "/usr/bin/python3"
    ssh = target_host(Server(name="c", host="10.0.0.1"))
    assert "ansible_python_interpreter" not in ssh.vars
