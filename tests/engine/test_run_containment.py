"""A run from a plain directory checks again, at run time, that nothing leads out of it.

A state applied from a directory that is not a Git repository runs the directory as it is when
the job runs, so what ``validate`` checked at apply time may have changed since: a symlink
added afterwards, or an import edited to point elsewhere, would run code from outside the
repository. The run's copy is checked before ansible-playbook starts; the run fails naming the
path, and nothing from outside runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.engine.planning import open_state

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

SITE_TEMPLATE = """apiVersion: reconciler/v1
kind: JobTemplate
metadata: {name: site}
spec:
  playbook: playbooks/site.yml
  timeout: 2m
"""
SITE_PLAYBOOK = """- import_playbook: common/hello.yml
"""
HELLO = """- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: hello from inside}
"""


def _evil(marker: Path) -> str:
    return f"""- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.command: touch {marker}
"""


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.repo = tmp / "repo"
        self.state = str(tmp / "state.sqlite")
        self.outside = tmp / "outside"
        self.marker = tmp / "RAN-FROM-OUTSIDE"
        self.outside.mkdir()
        (self.outside / "hello.yml").write_text(_evil(self.marker))
        (self.outside / "evil.yml").write_text(_evil(self.marker))

    def run(self, template: str = "site") -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "run", template, "--wait", "--state", self.state],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=self.tmp,
            timeout=180,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def last_message(self) -> str:
        with open_state(self.state) as store:
            runs = store.list_runs()
        assert runs[0].status == "failed", runs[0]
        return runs[0].message or ""


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    s = Setup(tmp_path)
    shutil.copytree(ROOT / "example-repo", s.repo)  # a plain directory: no .git
    (s.repo / "templates" / "site.yaml").write_text(SITE_TEMPLATE)
    (s.repo / "playbooks" / "site.yml").write_text(SITE_PLAYBOOK)
    (s.repo / "playbooks" / "common").mkdir()
    (s.repo / "playbooks" / "common" / "hello.yml").write_text(HELLO)
    # a symlink that stays inside is fine, at apply time and at run time
    os.symlink("site.yml", s.repo / "playbooks" / "alias.yml")
    applied = CliRunner().invoke(cli, ["apply", str(s.repo), "--yes", "--state", s.state])
    assert applied.exit_code == 0, applied.output
    first = s.run()
    assert first.returncode == 0, (first.stdout, first.stderr)
    return s


def test_a_symlinked_directory_added_after_apply_stops_the_run_naming_it(setup: Setup) -> None:
    common = setup.repo / "playbooks" / "common"
    shutil.rmtree(common)
    os.symlink(setup.outside, common)
    done = setup.run()
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert not setup.marker.exists()
    message = setup.last_message()
    assert "playbooks/common" in message and "outside the repository" in message, message
    assert "playbooks/common" in done.stdout + done.stderr


def test_a_symlink_anywhere_in_the_copy_that_leads_out_stops_the_run(setup: Setup) -> None:
    # not on the playbook's path: ansible.cfg, roles/ or library/ are found without an import
    (setup.repo / "files").mkdir()
    os.symlink("/etc/passwd", setup.repo / "files" / "passwd")
    done = setup.run()
    assert done.returncode == 1, (done.stdout, done.stderr)
    message = setup.last_message()
    assert "files/passwd" in message and "/etc/passwd" in message, message


def test_an_import_edited_to_a_path_outside_stops_the_run_naming_it(setup: Setup) -> None:
    evil = setup.outside / "evil.yml"
    (setup.repo / "playbooks" / "site.yml").write_text(f"- import_playbook: {evil}\n")
    done = setup.run()
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert not setup.marker.exists()
    message = setup.last_message()
    assert str(evil) in message and "outside the repository" in message, message


def test_a_playbook_replaced_by_a_symlink_leading_out_stops_the_run(setup: Setup) -> None:
    site = setup.repo / "playbooks" / "site.yml"
    site.unlink()
    os.symlink(setup.outside / "evil.yml", site)
    done = setup.run()
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert not setup.marker.exists()
    assert "playbooks/site.yml" in setup.last_message()
