"""A repository behind an HTTP remote that asks for a password.

The remote is ``git http-backend`` behind basic auth on 127.0.0.1 (``tests/githttp.py``). A
state is applied from a URL with the password in it, and runs check that revision out again
from the same remote: the password is stored nowhere (state, plan file, clone cache), and a
run takes credentials only from where the user gave them, the environment or a Git
credential helper. Every command is the real CLI in a subprocess; every run a real
ansible-playbook run on localhost.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.engine.planning import open_state
from tests.githttp import PrivateGitServer
from tests.gitutil import git

ROOT = Path(__file__).resolve().parents[2]
USER = "deploy"
PASSWORD = "pw-7Hq2vXk9-private"

TEMPLATE = """\
apiVersion: reconciler/v1
kind: JobTemplate
metadata: {name: hello}
spec:
  playbook: playbooks/hello.yml
"""
PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.shell: env > {env_file}
"""


@dataclass
class Remote:
    server: PrivateGitServer
    tmp: Path
    cache: Path
    state: Path
    env_file: Path

    @property
    def url(self) -> str:
        return self.server.url("jobs.git")

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RECONCILER_", "GIT_")) and k != "HOME"
        }
        full.update(
            {
                "HOME": str(self.tmp / "home"),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_TERMINAL_PROMPT": "0",
                "RECONCILER_CACHE_DIR": str(self.cache),
                "RECONCILER_STATE": str(self.state),
                "PYTHONPATH": str(ROOT),
                **(env or {}),
            }
        )
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            cwd=self.tmp,
            env=full,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    work = tmp_path / "work"
    (work / "playbooks").mkdir(parents=True)
    env_file = tmp_path / "ansible-env.txt"
    (work / "hello.yaml").write_text(TEMPLATE)
    (work / "playbooks" / "hello.yml").write_text(PLAYBOOK.format(env_file=env_file))
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "hello")
    served = tmp_path / "served"
    served.mkdir()
    git(tmp_path, "clone", "-q", "--bare", str(work), str(served / "jobs.git"))
    (tmp_path / "home").mkdir()
    with PrivateGitServer(served, USER, PASSWORD) as server:
        r = Remote(server, tmp_path, tmp_path / "cache", tmp_path / "state.sqlite", env_file)
        applied = r.cli("apply", server.url("jobs.git", f"{USER}:{PASSWORD}"), "--yes")
        assert applied.returncode == 0, applied.stderr
        assert PASSWORD not in applied.stdout + applied.stderr
        yield r


def files_holding(root: Path, needle: str) -> list[str]:
    """Every file below ``root`` whose bytes contain ``needle``."""
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath, name)
            if not path.is_symlink() and needle.encode() in path.read_bytes():
                found.append(str(path.relative_to(root)))
    return found


def test_applying_from_a_url_with_a_password_stores_the_password_nowhere(
    remote: Remote,
) -> None:
    secret_url = remote.server.url("jobs.git", f"{USER}:{PASSWORD}")
    # a clone that an older version kept under the URL as given, password and all
    old = remote.cache / "repos" / hashlib.sha256(secret_url.encode()).hexdigest()[:24]
    old.mkdir(parents=True)
    (old / "config").write_text(f'[remote "origin"]\n\turl = {secret_url}\n')
    plan_file = remote.tmp / "plan.json"
    made = remote.cli("plan", secret_url, "--out", str(plan_file))
    assert made.returncode == 0, made.stderr
    assert PASSWORD not in made.stdout + made.stderr
    with open_state(str(remote.state)) as store:
        assert store.info().revision is not None
    # the state (with its WAL), the saved plan, the clone cache: nowhere on disk
    assert files_holding(remote.tmp, PASSWORD) == []
    # one clone, whatever credentials the URL carried
    assert len(list((remote.cache / "repos").iterdir())) == 1
    assert any(status == 401 for _, _, status in remote.server.requests)


def test_a_run_checks_out_from_the_private_remote_with_credentials_from_the_environment(
    remote: Remote,
) -> None:
    creds = {"RECONCILER_GIT_USERNAME": USER, "RECONCILER_GIT_PASSWORD": PASSWORD}
    before = len(remote.server.requests)
    done = remote.cli("run", "hello", "--wait", "--format", "json", env=creds)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    assert PASSWORD not in done.stdout + done.stderr
    # fetched again from the remote, and let in (the password was not kept anywhere)
    refs = ("GET", "/jobs.git/info/refs?service=git-upload-pack")
    assert [s for m, p, s in remote.server.requests[before:] if (m, p) == refs] == [401, 200]
    # the playbook ran without the password in its environment
    assert remote.env_file.exists() and PASSWORD not in remote.env_file.read_text()
    remote.env_file.unlink()
    assert files_holding(remote.tmp, PASSWORD) == []
    assert len(list((remote.cache / "repos").iterdir())) == 1


def test_a_run_takes_credentials_from_a_git_credential_helper(remote: Remote) -> None:
    store_file = remote.tmp / "home" / "git-credentials"
    store_file.write_text(f"http://{USER}:{PASSWORD}@127.0.0.1:{remote.server.port}\n")
    subprocess.run(
        ["git", "config", "--global", "credential.helper", f"store --file={store_file}"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            "HOME": str(remote.tmp / "home"),
            "GIT_CONFIG_NOSYSTEM": "1",
        },
        check=True,
    )
    done = remote.cli("run", "hello", "--wait", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    assert remote.env_file.exists() and PASSWORD not in remote.env_file.read_text()
    store_file.unlink()
    remote.env_file.unlink()
    assert files_holding(remote.tmp, PASSWORD) == []


def test_a_run_without_credentials_fails_saying_where_to_give_them(remote: Remote) -> None:
    done = remote.cli("run", "hello", "--wait")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "cannot check out commit" in line and "credentials" in line, line
    assert "RECONCILER_GIT_PASSWORD" in line
    assert f"http://***@127.0.0.1:{remote.server.port}/jobs.git" in line
    assert PASSWORD not in done.stdout + done.stderr
    wrong = remote.cli(
        "run",
        "hello",
        "--wait",
        env={"RECONCILER_GIT_USERNAME": USER, "RECONCILER_GIT_PASSWORD": "not-it"},
    )
    assert wrong.returncode == 1
    assert "not-it" not in wrong.stdout + wrong.stderr
    assert not remote.env_file.exists()
    with open_state(str(remote.state)) as store:
        assert [r.status for r in store.list_runs()] == ["failed", "failed"]
