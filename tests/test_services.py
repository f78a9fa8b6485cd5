"""``.ci/services``: make test makes sure of PostgreSQL, sshd and Chromium, or stops with one line.

The script runs for real with PATH pointing at a directory the test fills: empty, or holding
links to the machine's real tools.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "services"
BASH = shutil.which("bash") or "/bin/bash"


def _run(bindir: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bindir), "HOME": str(bindir), "LC_ALL": "C"}
    if "RECONCILER_TEST_PG" in os.environ:
        env["RECONCILER_TEST_PG"] = os.environ["RECONCILER_TEST_PG"]
    return subprocess.run(
        [BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _link(bindir: Path, *tools: str) -> None:
    for tool in tools:
        found = shutil.which(tool, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
        assert found, f"{tool} is needed by the suite and is not installed"
        (bindir / tool).symlink_to(found)


def test_without_postgresql_tools_it_stops_at_once_with_one_line(tmp_path: Path) -> None:
    done = _run(tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "pg_isready" in lines[0] and "install postgresql" in lines[0]


def test_without_sshd_and_no_way_to_install_it_it_stops_with_one_line(tmp_path: Path) -> None:
    _link(tmp_path, "pg_isready")  # the real one: the suite's PostgreSQL is up
    done = _run(tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "sshd" in lines[0] and "install openssh-server" in lines[0]


def test_without_chromium_and_no_way_to_install_it_it_stops_with_one_line(
    tmp_path: Path,
) -> None:
    _link(tmp_path, "pg_isready", "sshd", "ssh", "ssh-keygen")
    done = _run(tmp_path)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "chromium" in lines[0] and "install chromium and chromium-driver" in lines[0]


def test_with_everything_there_it_is_quiet_and_succeeds(tmp_path: Path) -> None:
    _link(tmp_path, "pg_isready", "sshd", "ssh", "ssh-keygen", "chromium", "chromedriver")
    done = _run(tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_make_test_makes_sure_of_the_services_before_any_test_runs() -> None:
    make = shutil.which("make")
    assert make, "make is part of the set-up (README)"
    done = subprocess.run(
        [make, "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stdout.splitlines()
    first_service = next(i for i, line in enumerate(lines) if ".ci/services" in line)
    first_pytest = next(i for i, line in enumerate(lines) if "pytest" in line)
    assert first_service < first_pytest
    assert ".ci/services" in (ROOT / ".ci" / "run").read_text()
