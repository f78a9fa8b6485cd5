"""Real ansible-playbook runs against localhost aliases: orchestration, forks, timeouts,
cancellation, bad input, targets and simulation."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from reconciler.executors.ansible import AnsibleExecutor
from reconciler.executors.spec import Progress, RunRequest, hosts_for_targets
from reconciler.model.common import Targets
from reconciler.model.inventory import Group, Server

from .conftest import leftovers, local_hosts, write_project, zygote

HELLO = """
- hosts: all
  gather_facts: false
  tasks:
    - name: say hello
      ansible.builtin.debug:
        msg: "hello from {{ inventory_hostname }}"
    - name: write a file
      ansible.builtin.copy:
        content: "{{ inventory_hostname }}\\n"
        dest: "{{ out_dir }}/{{ inventory_hostname }}.txt"
"""

SLEEPY = """
- hosts: all
  gather_facts: false
  tasks:
    - name: nap
      ansible.builtin.command: sleep {{ nap }}
"""


def test_a_localhost_orchestration_run_succeeds_with_per_host_results_progress_and_a_log(
    executor: AnsibleExecutor, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "p", {"site.yml": HELLO})
    logged: list[str] = []
    seen: list[Progress] = []
    request = RunRequest(
        run_id="r1",
        project_dir=str(project),
        playbook="site.yml",
        trusted_vars={"out_dir": str(tmp_path)},
    )
    handle = executor.start(request, on_progress=seen.append, on_log=logged.append)
    events = list(handle.events())
    outcome = handle.wait(60)

    assert outcome.status == "succeeded", outcome.message
    assert list(outcome.hosts) == ["localhost"]
    host = outcome.hosts["localhost"]
    assert (host.status, host.ok, host.changed, host.failed) == ("changed", 2, 1, 0)
    assert (tmp_path / "localhost.txt").read_text() == "localhost\n"
    assert [(p.task, p.status) for p in events if p.host] == [
        ("say hello", "ok"),
        ("write a file", "changed"),
    ]
    assert events == seen
    assert "hello from localhost" in handle.log_text()
    assert "".join(logged) == handle.log_text()
    assert outcome.rc == 0


def test_forks_run_hosts_in_parallel(executor: AnsibleExecutor, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", {"site.yml": SLEEPY})
    request = RunRequest(
        run_id="forks",
        project_dir=str(project),
        playbook="site.yml",
        hosts=local_hosts("a", "b", "c", "d"),
        trusted_vars={"nap": 2},
        forks=4,
    )
    started = time.monotonic()
    outcome = executor.run(request)
    elapsed = time.monotonic() - started
    assert outcome.status == "succeeded", outcome.message
    assert sorted(outcome.hosts) == ["a", "b", "c", "d"]
    assert elapsed < 7.5, f"4 hosts x 2 s with forks=4 took {elapsed:.1f} s (serial: 8 s+)"


@pytest.mark.slow
def test_a_run_exceeding_its_timeout_is_timed_out_and_leaves_no_process(
    executor: AnsibleExecutor, tmp_path: Path, process_snapshot: set[int]
) -> None:
    project = write_project(tmp_path / "p", {"site.yml": SLEEPY})
    request = RunRequest(
        run_id="slow",
        project_dir=str(project),
        playbook="site.yml",
        hosts=local_hosts("a", "b"),
        trusted_vars={"nap": 120},
        timeout=4,
        kill_grace=2,
    )
    started = time.monotonic()
    outcome = executor.run(request)
    assert outcome.status == "timed-out"
    assert "timed out after 4 s" in outcome.message
    assert time.monotonic() - started < 15
    assert leftovers(process_snapshot, keep=zygote(executor)) == []
    executor.close()
    assert leftovers(process_snapshot) == []


@pytest.mark.slow
def test_a_run_cancelled_mid_way_is_cancelled_and_leaves_no_process(
    executor: AnsibleExecutor, tmp_path: Path, process_snapshot: set[int]
) -> None:
    project = write_project(tmp_path / "p", {"site.yml": SLEEPY})
    napping = threading.Event()

    def on_progress(p: Progress) -> None:
        if p.event == "phase" or p.task == "nap":
            napping.set()

    request = RunRequest(
        run_id="cancel",
        project_dir=str(project),
        playbook="site.yml",
        hosts=local_hosts("a", "b", "c"),
        trusted_vars={"nap": 120},
        kill_grace=2,
    )
    handle = executor.start(request, on_progress=on_progress)
    assert napping.wait(30)
    end = time.monotonic() + 30  # until the sleep module processes are running
    while not any("sleep 120" in line for line in leftovers(process_snapshot, wait=0)):
        assert time.monotonic() < end, "the sleep tasks did not start"
        time.sleep(0.1)
    time.sleep(0.5)
    started = time.monotonic()
    handle.cancel()
    outcome = handle.wait(30)
    assert outcome.status == "cancelled"
    assert time.monotonic() - started < 10
    assert leftovers(process_snapshot, keep=zygote(executor)) == []
    executor.close()
    assert leftovers(process_snapshot) == []


def test_a_missing_playbook_fails_with_a_clear_message(
    executor: AnsibleExecutor, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "p", {"site.yml": HELLO})
    outcome = executor.run(RunRequest(run_id="m", project_dir=str(project), playbook="nope.yml"))
    assert outcome.status == "failed"
    assert outcome.message == f"playbook 'nope.yml' not found in {project}"
    escape = executor.run(
        RunRequest(run_id="m2", project_dir=str(project), playbook="../p/../../etc/passwd")
    )
    assert escape.status == "failed"
    assert "outside the project directory" in escape.message


def test_a_playbook_syntax_error_fails_with_the_ansible_error(
    executor: AnsibleExecutor, tmp_path: Path, process_snapshot: set[int]
) -> None:
    broken = "- hosts: all\n  tasks:\n    - name: x\n      debug: msg=a\n     bad: [\n"
    project = write_project(tmp_path / "p", {"site.yml": broken})
    outcome = executor.run(RunRequest(run_id="s", project_dir=str(project), playbook="site.yml"))
    assert outcome.status == "failed"
    assert "ERROR" in outcome.message and "site.yml" in outcome.message, outcome.message
    assert outcome.hosts["localhost"].message == "not run"
    assert leftovers(process_snapshot, keep=zygote(executor)) == []


def test_an_empty_target_list_runs_on_localhost_only(
    executor: AnsibleExecutor, tmp_path: Path
) -> None:
    servers = [Server(name="web1", host="10.0.0.1", roles=["web"])]
    hosts = hosts_for_targets(Targets(), servers)
    assert [h.name for h in hosts] == ["localhost"]
    assert hosts[0].vars["ansible_connection"] == "local"
    project = write_project(tmp_path / "p", {"site.yml": HELLO})
    for hosts_given in (hosts, ()):
        outcome = executor.run(
            RunRequest(
                run_id="empty",
                project_dir=str(project),
                playbook="site.yml",
                hosts=hosts_given,
                trusted_vars={"out_dir": str(tmp_path)},
            )
        )
        assert outcome.status == "succeeded", outcome.message
        assert list(outcome.hosts) == ["localhost"]
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["localhost.txt"]


def test_targets_resolve_to_inventory_servers_with_group_vars_and_ansible_host() -> None:
    servers = [
        Server(name="web1", host="10.0.0.1", roles=["web"], environments=["prod"]),
        Server(name="web2", roles=["web"], environments=["test"], vars={"port": 81}),
        Server(name="db1", roles=["db"], environments=["prod"]),
    ]
    roles = {"web": Group(vars={"port": 80, "tier": "front"})}
    envs = {"prod": Group(vars={"tier": "prod-front"})}
    hosts = hosts_for_targets(Targets(roles=["web"], environments=["prod"]), servers, roles, envs)
    assert [h.name for h in hosts] == ["web1"]
    assert hosts[0].vars == {"port": 80, "tier": "prod-front", "ansible_host": "10.0.0.1"}
    assert hosts[0].groups == ("web", "prod")
    union = hosts_for_targets(Targets(servers=["db1"], roles=["web"]), servers, roles, envs)
    assert [h.name for h in union] == ["web1", "web2", "db1"]
    assert union[1].vars["port"] == 81
    assert hosts_for_targets(Targets(roles=["nothing"]), servers) == ()


SIMULATED = """
- hosts: all
  gather_facts: false
  tasks:
    - name: create the file
      ansible.builtin.copy:
        content: "x\\n"
        dest: "{{ out_dir }}/{{ inventory_hostname }}.sim"
    - name: run a script
      ansible.builtin.shell: touch {{ out_dir }}/shell-ran
    - block:
        - name: touch for real
          ansible.builtin.command: touch {{ out_dir }}/real-ran
      check_mode: false
"""


def test_a_simulation_with_check_mode_false_tasks_is_refused_unless_allowed(
    executor: AnsibleExecutor, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "p", {"site.yml": SIMULATED})
    base = RunRequest(
        run_id="sim",
        project_dir=str(project),
        playbook="site.yml",
        mode="simulate",
        hosts=local_hosts("a"),
        trusted_vars={"out_dir": str(tmp_path)},
    )
    refused = executor.run(base)
    assert refused.status == "failed"
    assert refused.message.startswith("simulation refused")
    assert "'touch for real'" in refused.message
    assert refused.hosts == {}
    assert not (tmp_path / "real-ran").exists()

    from dataclasses import replace

    allowed = executor.run(replace(base, allow_real_tasks_in_simulation=True))
    assert allowed.status == "succeeded", allowed.message
    kinds = {(f.kind, f.task, f.host) for f in allowed.findings}
    assert ("cannot-simulate", "run a script", "a") in kinds
    assert ("runs-for-real", "touch for real", None) in kinds  # static
    assert ("runs-for-real", "touch for real", "a") in kinds  # observed
    assert not (tmp_path / "a.sim").exists()  # check mode changed nothing
    assert not (tmp_path / "shell-ran").exists()
    assert (tmp_path / "real-ran").exists()  # explicitly allowed: it really ran


@pytest.mark.slow
def test_a_configuration_run_remediates_only_drifted_local_hosts(
    executor: AnsibleExecutor, tmp_path: Path
) -> None:
    project = write_project(
        tmp_path / "p",
        {
            "site.yml": """
- hosts: all
  gather_facts: false
  tasks:
    - name: manage app.conf
      ansible.builtin.copy:
        content: "port=8080\\n"
        dest: "{{ out_dir }}/{{ inventory_hostname }}.conf"
"""
        },
    )
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.conf").write_text("port=8080\n")
    (tmp_path / "b.conf").write_text("port=9999\n")
    phases: list[tuple[str, str]] = []
    outcome = executor.run(
        RunRequest(
            run_id="cfg",
            project_dir=str(project),
            playbook="site.yml",
            kind="configuration",
            remediate=True,
            hosts=local_hosts("a", "b", "c"),
            trusted_vars={"out_dir": str(tmp_path)},
        ),
        on_progress=lambda p: phases.append((p.phase, p.host or "")) if p.host else None,
    )
    assert outcome.status == "succeeded", outcome.message
    assert outcome.drift == {"a": "in-sync", "b": "fixed", "c": "in-sync"}
    assert {h for ph, h in phases if ph == "remediate"} == {"b"}
    assert {h for ph, h in phases if ph == "recheck"} == {"b"}
    b = outcome.hosts["b"]
    assert b.drifted is True and b.drift[0].task == "manage app.conf"
    assert "-port=9999" in b.drift[0].diff and "+port=8080" in b.drift[0].diff
    assert (tmp_path / "b.conf").read_text() == "port=8080\n"
