"""Variables from outside Git are data; secrets never reach disk, argv, env, logs or events."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.executors.ansible import AnsibleExecutor
from reconciler.executors.spec import Progress, RunRequest, TargetHost
from reconciler.executors.worker import descendants

from .conftest import LOCAL_VARS, local_hosts, write_project

USES_VARS = """
- hosts: all
  gather_facts: false
  tasks:
    - name: show
      ansible.builtin.debug:
        msg: "{{ payload }} {{ nested }} {{ host_payload | default('') }}"
    - name: store
      ansible.builtin.copy:
        content: "{{ payload }}|{{ nested | to_json }}|{{ host_payload | default('') }}"
        dest: "{{ out_dir }}/out.txt"
"""


def _payload(marker: Path) -> str:
    return "{{ lookup('pipe', 'touch " + str(marker) + "') }}"


def test_untrusted_values_are_never_templated_through_any_path(
    executor: AnsibleExecutor, tmp_path: Path
) -> None:
    marker = tmp_path / "MARKER"
    bad = _payload(marker)
    project = write_project(tmp_path / "p", {"site.yml": USES_VARS})
    outcome = executor.run(
        RunRequest(
            run_id="unsafe",
            project_dir=str(project),
            playbook="site.yml",
            hosts=(
                TargetHost(
                    "localhost",
                    vars=dict(LOCAL_VARS),
                    untrusted_vars={"host_payload": bad},
                ),
            ),
            trusted_vars={"out_dir": str(tmp_path), "payload": "overridden"},
            untrusted_vars={
                "payload": bad,
                "nested": {"list": [bad, {"deep": bad}], bad: "as a key"},
            },
        )
    )
    assert outcome.status == "succeeded", outcome.message
    assert not marker.exists()
    written = (tmp_path / "out.txt").read_text()
    assert written.startswith(bad + "|")
    assert written.count("lookup('pipe'") == 5


def test_the_same_value_from_git_is_templated_so_the_test_above_can_fail(
    executor: AnsibleExecutor, tmp_path: Path
) -> None:
    marker = tmp_path / "MARKER"
    project = write_project(tmp_path / "p", {"site.yml": USES_VARS})
    outcome = executor.run(
        RunRequest(
            run_id="trusted",
            project_dir=str(project),
            playbook="site.yml",
            trusted_vars={
                "out_dir": str(tmp_path),
                "payload": _payload(marker),
                "nested": ["x"],
            },
        )
    )
    assert outcome.status == "succeeded", outcome.message
    assert marker.exists()  # Git is trusted: its values are templates by design


SECRET_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: show the secret
      ansible.builtin.debug:
        msg: "token is {{ api_token }}"
    - name: render it into a file
      ansible.builtin.copy:
        content: "token={{ api_token }}\\n"
        dest: "{{ out_dir }}/app.conf"
        mode: "0600"
    - name: give the pollers time
      ansible.builtin.command: sleep 1
      changed_when: false
"""


def _grep_tree(root: Path, needle: bytes) -> list[str]:
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if not stat.S_ISREG(path.lstat().st_mode):
                continue  # the FIFO: nothing is stored in it
            try:
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                continue
    return hits


def _scan_proc(needle: bytes, hits: set[str], stop: threading.Event) -> None:
    me = str(os.getpid())
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid == me:
                continue
            for what in ("cmdline", "environ"):
                try:
                    with open(f"/proc/{pid}/{what}", "rb") as fh:
                        if needle in fh.read():
                            hits.add(f"{pid}/{what}")
                except OSError:
                    continue
        stop.wait(0.05)


@pytest.mark.slow
def test_a_secret_never_lands_on_disk_in_argv_env_logs_or_events(tmp_path: Path) -> None:
    secret = "s3cr3t-Tok3n-" + os.urandom(6).hex()
    project = write_project(tmp_path / "p", {"site.yml": SECRET_PLAYBOOK})
    workroot = tmp_path / "work"
    workroot.mkdir(mode=0o700)
    out_dir = tmp_path / "target"
    out_dir.mkdir()
    progress: list[Progress] = []
    proc_hits: set[str] = set()
    stop = threading.Event()
    scanner = threading.Thread(target=_scan_proc, args=(secret.encode(), proc_hits, stop))
    scanner.start()
    keep = AnsibleExecutor(workdir_root=str(workroot), keep_workdir=True)
    try:
        handle = keep.start(
            RunRequest(
                run_id="secret",
                project_dir=str(project),
                playbook="site.yml",
                kind="configuration",
                remediate=True,
                trusted_vars={"out_dir": str(out_dir)},
                secrets={"api_token": secret},
            ),
            on_progress=progress.append,
        )
        outcome = handle.wait(120)
    finally:
        stop.set()
        scanner.join()
    assert outcome.status == "succeeded", outcome.message
    assert (out_dir / "app.conf").read_text() == f"token={secret}\n"  # it was really used
    assert outcome.drift == {"localhost": "fixed"}
    assert proc_hits == set()
    assert len(handle.workdirs) == 3  # check, remediate, recheck; kept for this inspection
    assert _grep_tree(workroot, secret.encode()) == []
    log = handle.log_text()
    assert "token is ********" in log and "token=********" in log
    assert secret not in log
    assert secret not in repr(outcome) and secret not in repr(progress)
    assert all(secret not in d.diff for h in outcome.hosts.values() for d in h.drift)

    # and without keep_workdir nothing at all is left behind
    clean_root = tmp_path / "clean"
    clean_root.mkdir(mode=0o700)
    normal = AnsibleExecutor(workdir_root=str(clean_root))
    again = normal.run(
        RunRequest(
            run_id="secret2",
            project_dir=str(project),
            playbook="site.yml",
            trusted_vars={"out_dir": str(out_dir)},
            secrets={"api_token": secret},
        )
    )
    assert again.status == "succeeded", again.message
    assert list(clean_root.iterdir()) == []


ENV_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: use the secret
      ansible.builtin.debug:
        msg: "token is {{ api_token }}"
    - name: a module process writes its environment, then sleeps for the pollers
      ansible.builtin.shell: "cat /proc/$PPID/environ > {{ out_dir }}/module.environ; sleep 1"
      changed_when: false
"""


def _environ_scan(
    pids_of: Callable[[], list[int]], seen: dict[int, bytes], stop: threading.Event
) -> None:
    while not stop.is_set():
        for pid in pids_of():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            seen[pid] = seen.get(pid, b"") + cmdline + b"\n" + environ + b"\n"
        stop.wait(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("prefork", [True, False], ids=["zygote", "fresh-worker"])
def test_a_secret_in_the_environment_of_the_resolving_process_reaches_no_child_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefork: bool
) -> None:
    # The process that resolves `valueFrom: {env: ...}` has the secret in its environment
    # (the daemon, `reconciler run`): what it starts must not inherit it.
    secret = "env-S3cret-" + os.urandom(6).hex()
    monkeypatch.setenv("RECONCILER_TEST_TOKEN", secret)
    project = write_project(tmp_path / "p", {"site.yml": ENV_PLAYBOOK})
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    workroot = tmp_path / "work"
    workroot.mkdir(mode=0o700)
    me = os.getpid()
    seen: dict[int, bytes] = {}
    stop = threading.Event()
    scanner = threading.Thread(target=_environ_scan, args=(lambda: descendants(me), seen, stop))
    with AnsibleExecutor(workdir_root=str(workroot), prefork=prefork) as executor:
        scanner.start()
        try:
            handle = executor.start(
                RunRequest(
                    run_id="env",
                    project_dir=str(project),
                    playbook="site.yml",
                    hosts=local_hosts("localhost"),
                    trusted_vars={"out_dir": str(out_dir)},
                    secrets={"api_token": secret},
                )
            )
            outcome = handle.wait(120)
        finally:
            stop.set()
            scanner.join()
        zygote_pid = executor.zygote_pid
        if prefork:
            assert zygote_pid is not None
            seen[zygote_pid] = Path(f"/proc/{zygote_pid}/environ").read_bytes()
    assert outcome.status == "succeeded", outcome.message
    assert "token is ********" in handle.log_text()  # it reached Ansible (by the FIFO)
    module_env = (out_dir / "module.environ").read_bytes()
    assert b"PATH=" in module_env  # control: the module's environment was written
    assert secret.encode() not in module_env
    kinds = b"".join(seen.values())
    assert b"ansible-playbook" in kinds and b"sleep" in kinds  # control: the pollers saw them
    leaked = [pid for pid, text in seen.items() if secret.encode() in text]
    assert leaked == [], [seen[p].split(b"\n")[0] for p in leaked]
