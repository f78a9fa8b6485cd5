"""A scheduled run's `valueFrom: {env: ...}` secret: the process that runs it has the secret in
its environment, yet the secret reaches Ansible only through the FIFO, and no process the run
starts (the zygote, the worker, ansible-playbook, its modules) inherits it or any other
variable that Git names as a secret."""

from __future__ import annotations

import os
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.engine import running as eng
from reconciler.engine.planning import open_state
from reconciler.executors.ansible import AnsibleExecutor
from reconciler.executors.worker import descendants
from reconciler.model.common import Targets
from reconciler.model.documents import Schedule
from tests.gitutil import git

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

TEMPLATE = """apiVersion: reconciler/v1
kind: JobTemplate
metadata: {name: tokens}
spec:
  playbook: playbooks/tokens.yml
  timeout: 5m
  variables:
    - {name: api_token, sensitive: true, required: true}
    - {name: out_dir, required: true}
"""
SCHEDULE = """apiVersion: reconciler/v1
kind: Schedule
metadata: {name: tokens-nightly}
spec:
  template: tokens
  owner: alice
  when: {daily: {at: "03:00"}}
  variables:
    api_token: {valueFrom: {env: RCX_API_TOKEN}}
    out_dir: OUT_DIR
"""
PLAYBOOK = """- hosts: all
  gather_facts: false
  tasks:
    - name: use the secret
      ansible.builtin.debug:
        msg: "token is {{ api_token }}"
    - name: a module process writes its environment, then sleeps for the pollers
      ansible.builtin.shell: "cat /proc/$PPID/environ > {{ out_dir }}/module.environ; sleep 1"
      changed_when: false
"""


def _scan(seen: dict[int, bytes], stop: threading.Event) -> None:
    me = os.getpid()
    while not stop.is_set():
        for pid in descendants(me):
            try:
                text = Path(f"/proc/{pid}/cmdline").read_bytes()
                text += b"\n" + Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            seen[pid] = seen.get(pid, b"") + text + b"\n"
        stop.wait(0.02)


def test_a_scheduled_runs_env_secret_reaches_ansible_only_through_the_fifo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "example-repo", repo)
    (repo / "templates" / "tokens.yaml").write_text(TEMPLATE)
    (repo / "schedules" / "tokens.yaml").write_text(SCHEDULE.replace("OUT_DIR", str(out_dir)))
    (repo / "playbooks" / "tokens.yml").write_text(PLAYBOOK)
    channels = repo / "channels.yaml"  # a secret whose name Ansible's prefix would let through
    channels.write_text(channels.read_text().replace("OPS_WEBHOOK_SECRET", "ANSIBLE_HOOK_KEY"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "tokens")
    state = str(tmp_path / "state.sqlite")
    applied = CliRunner().invoke(cli, ["apply", str(repo), "--yes", "--state", state])
    assert applied.exit_code == 0, applied.output

    secrets = {
        name: f"{name}-{os.urandom(6).hex()}"
        for name in ("RCX_API_TOKEN", "ANSIBLE_HOOK_KEY", "REGISTRY_TOKEN")
    }
    for name, value in secrets.items():  # the environment of the process that runs the job
        monkeypatch.setenv(name, value)
    now = datetime.now(UTC)
    seen: dict[int, bytes] = {}
    stop = threading.Event()
    scanner = threading.Thread(target=_scan, args=(seen, stop))
    with open_state(state) as store, AnsibleExecutor() as executor:
        body = store.get_object("Schedule", "tokens-nightly")
        assert body is not None
        schedule = Schedule.model_validate_json(body.body)
        record, resolved = eng.prepare_run(
            store, "tokens", Targets(), {}, False, "schedule", now, schedule=schedule, slot=now
        )
        resolved_secrets = {n: eng.resolve_secret(ref) for n, ref in resolved.secrets.items()}
        assert resolved_secrets == {"api_token": secrets["RCX_API_TOKEN"]}
        scanner.start()
        try:
            final = eng.execute_run(
                store, record, executor, resolved_secrets, {}, lambda: datetime.now(UTC)
            )
        finally:
            stop.set()
            scanner.join()
        log = store.read_log(record.id).text
        zygote = executor.zygote_pid
        assert zygote is not None
        seen[zygote] = Path(f"/proc/{zygote}/environ").read_bytes()
    assert final.status == "succeeded", final.message
    assert "token is ********" in log  # it reached Ansible, by the FIFO
    module_env = (out_dir / "module.environ").read_bytes()
    assert b"PATH=" in module_env  # control: the module wrote its environment
    everything = b"".join(seen.values())
    assert b"ansible-playbook" in everything and b"sleep 1" in everything  # control
    for name, value in secrets.items():
        assert value.encode() not in module_env, name
        assert name.encode() + b"=" not in module_env, name
        leaked = [seen[p].split(b"\n")[0] for p in seen if value.encode() in seen[p]]
        assert leaked == [], (name, leaked)
