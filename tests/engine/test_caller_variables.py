"""Variables from the command line never become Ansible's own variables, through the real CLI.

A template with ``allowNewVariables: true`` accepts names it does not declare, but a caller
must still not set how Ansible connects, escalates or interprets (``ansible_*``), nor the
variables Ansible sets itself (``hostvars``, ``omit``, ...). The attack below is the one the
``!unsafe`` tag cannot stop: a connection plugin reads the value as an option, not a template.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gitutil import git

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

OPEN_TEMPLATE = """apiVersion: reconciler/v1
kind: JobTemplate
metadata: {name: open}
spec:
  playbook: playbooks/open.yml
  allowNewVariables: true
  timeout: 2m
"""
OPEN_PLAYBOOK = """- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.ping:
"""


class Cli:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {
            **os.environ,
            "RECONCILER_STATE": str(tmp / "state.sqlite"),
            "RECONCILER_CACHE_DIR": str(tmp / "cache"),
            "PYTHONPATH": str(ROOT),
        }

    def __call__(self, *args: str, check: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == check, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def run_count(self) -> int:
        runs = json.loads(self("runs", "--limit", "500", "--format", "json").stdout)["runs"]
        return len(runs)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    tmp = tmp_path_factory.mktemp("caller-vars")
    repo = tmp / "repo"
    shutil.copytree(ROOT / "example-repo", repo)
    (repo / "templates" / "open.yaml").write_text(OPEN_TEMPLATE)
    (repo / "playbooks" / "open.yml").write_text(OPEN_PLAYBOOK)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "example with an open template")
    cli = Cli(tmp)
    cli("apply", str(repo), "--yes")
    # the template really runs: what follows is refused for its names, not for anything else
    cli("run", "open", "--server", "web-1", "--var", "note=hello", "--wait")
    return cli


def test_a_proxy_command_given_as_a_caller_variable_never_runs_on_the_controller(
    cli: Cli,
) -> None:
    marker = cli.tmp / "PROXY-COMMAND-RAN"
    before = cli.run_count()
    refused = cli(
        "run",
        "open",
        "--server",
        "web-1",
        "--var",
        "ansible_connection=ssh",
        "--var",
        f'ansible_ssh_common_args=-o ProxyCommand="sh -c \\"touch {marker}\\""',
        "--wait",
        check=1,
    )
    assert not marker.exists()
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert 'variable "ansible_connection"' in refused.stderr
    assert "ansible_" in refused.stderr and "outside Git" in refused.stderr
    assert cli.run_count() == before  # refused before anything was queued


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("ansible_python_interpreter", "ansible_"),
        ("ansible_shell_executable", "ansible_"),
        ("ansible_become", "ansible_"),
        ("inventory_hostname", "magic variable"),
        ("hostvars", "magic variable"),
        ("groups", "magic variable"),
        ("omit", "magic variable"),
        ("lookup", "template"),
        ("not-a-name", "identifier"),
    ],
)
def test_ansible_s_own_and_odd_names_are_refused_whatever_allow_new_variables_says(
    cli: Cli, name: str, why: str
) -> None:
    refused = cli("run", "open", "--server", "web-1", "--var", f"{name}=x", "--wait", check=1)
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1, refused.stderr
    assert f'variable "{name}"' in line and why in line, line
