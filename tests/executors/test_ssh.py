"""Real drift over SSH: one sshd per loopback address, a managed file edited on some servers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.executors.ansible import AnsibleExecutor
from reconciler.executors.spec import Progress, RunRequest

from .conftest import SshTargets, leftovers, write_project, zygote

MANAGED = """
- hosts: all
  gather_facts: false
  tasks:
    - name: manage app.conf
      ansible.builtin.copy:
        content: "port=8080\\nhost={{ inventory_hostname }}\\n"
        dest: "{{ conf_dir }}/{{ inventory_hostname }}.conf"
    - name: keep the connection busy
      ansible.builtin.command: "true"
      changed_when: false
      check_mode: false
    - name: still there
      ansible.builtin.ping:
"""


@pytest.mark.slow
def test_drift_is_found_only_where_edited_remediated_only_there_and_rechecked_clean(
    ssh_targets: SshTargets, tmp_path: Path, process_snapshot: set[int]
) -> None:
    ssh_targets.restart_all()
    conf = tmp_path / "conf"
    conf.mkdir()
    project = write_project(tmp_path / "p", {"site.yml": MANAGED})
    executor = AnsibleExecutor(workdir_root=str(tmp_path))
    base = RunRequest(
        run_id="apply",
        project_dir=str(project),
        playbook="site.yml",
        hosts=ssh_targets.hosts(4),
        trusted_vars={"conf_dir": str(conf)},
        forks=4,
    )
    applied = executor.run(base)
    assert applied.status == "succeeded", applied.message
    assert {h.status for h in applied.hosts.values()} == {"changed"}

    (conf / "srv2.conf").write_text("port=9999\nhost=srv2\n")
    (conf / "srv4.conf").write_text("port=8080\n")
    from dataclasses import replace

    check = executor.run(replace(base, run_id="check", kind="configuration"))
    assert check.status == "succeeded", check.message
    assert check.drift == {
        "srv1": "in-sync",
        "srv2": "found",
        "srv3": "in-sync",
        "srv4": "found",
    }
    assert "-port=9999" in check.hosts["srv2"].drift[0].diff
    assert (conf / "srv2.conf").read_text() == "port=9999\nhost=srv2\n"  # check changed nothing

    seen: list[Progress] = []
    fix = executor.run(
        replace(base, run_id="fix", kind="configuration", remediate=True),
        on_progress=seen.append,
    )
    assert fix.status == "succeeded", fix.message
    assert fix.drift == {
        "srv1": "in-sync",
        "srv2": "fixed",
        "srv3": "in-sync",
        "srv4": "fixed",
    }
    touched = {p.host for p in seen if p.phase == "remediate" and p.host}
    assert touched == {"srv2", "srv4"}
    assert {p.host for p in seen if p.phase == "recheck" and p.host} == {"srv2", "srv4"}
    assert (conf / "srv2.conf").read_text() == "port=8080\nhost=srv2\n"

    clean = executor.run(replace(base, run_id="recheck", kind="configuration"))
    assert set(clean.drift.values()) == {"in-sync"}
    assert leftovers(process_snapshot, keep=ssh_targets.pids() | zygote(executor)) == []
    executor.close()
    assert leftovers(process_snapshot, keep=ssh_targets.pids()) == []


@pytest.mark.slow
def test_a_server_stopped_mid_run_is_unreachable_and_its_drift_unknown(
    ssh_targets: SshTargets, tmp_path: Path, process_snapshot: set[int]
) -> None:
    ssh_targets.restart_all()
    conf = tmp_path / "conf"
    conf.mkdir()
    project = write_project(tmp_path / "p", {"site.yml": MANAGED})
    victim = ssh_targets.addresses[2]  # srv3

    def on_progress(p: Progress) -> None:
        if p.host == "srv3" and p.task == "manage app.conf" and victim in ssh_targets.procs:
            ssh_targets.stop(victim)

    executor = AnsibleExecutor(workdir_root=str(tmp_path))
    outcome = executor.run(
        RunRequest(
            run_id="down",
            project_dir=str(project),
            playbook="site.yml",
            kind="configuration",
            hosts=ssh_targets.hosts(3),
            trusted_vars={"conf_dir": str(conf)},
        ),
        on_progress=on_progress,
    )
    assert outcome.status == "failed"
    assert outcome.hosts["srv3"].status == "unreachable"
    assert outcome.drift["srv3"] == "unknown"
    assert outcome.hosts["srv3"].drifted is None
    assert outcome.drift["srv1"] == "found" and outcome.drift["srv2"] == "found"
    assert "srv3: unreachable" in outcome.message
    assert leftovers(process_snapshot, keep=ssh_targets.pids() | zygote(executor)) == []
    executor.close()
    assert leftovers(process_snapshot, keep=ssh_targets.pids()) == []
    ssh_targets.restart_all()
    assert os.path.isdir(conf)
