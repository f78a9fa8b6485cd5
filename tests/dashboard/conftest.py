"""Helpers of the dashboard suite: one real ``serve`` (fake executor whose log grows while it
runs) over a Git repository with schedules in every state, API keys made through the CLI, a
little history written through the real store, and headless Chromium driven by selenium.

The repository: ``Europe/Berlin`` by default (so instants carry ``+01:00``), a schedule in
``America/New_York``, a paused one, one waiting for approval and a past-due ``at:`` waiting for
approval. Screenshots go to ``test-artifacts/dashboard/`` at the repository root.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import dedent

import pytest

from reconciler.stores import DriftRecord, HostResult, NewRun, open_store
from tests.daemon.conftest import Serve, until
from tests.gitutil import git

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 800)

FILES = {
    "reconciler.yaml": """
        apiVersion: reconciler/v1
        kind: Settings
        spec: {timezone: Europe/Berlin}
        """,
    "inventory.yaml": """
        apiVersion: reconciler/v1
        kind: Inventory
        metadata: {name: dc}
        spec:
          roles: {web: {}, db: {}}
          servers:
            - {name: web-1, host: 127.0.0.1, roles: [web]}
            - {name: web-2, host: 127.0.0.1, roles: [web]}
            - {name: db-1, host: 127.0.0.1, roles: [db]}
        """,
    "policy.yaml": """
        apiVersion: reconciler/v1
        kind: Policy
        metadata: {name: ops}
        spec:
          users:
            - {name: alice, email: alice@example.com, groups: [leads]}
            - {name: ops, email: ops@example.com, groups: []}
          permissions:
            - {group: leads, approve: ["*"], run: ["*"]}
            - {user: ops, run: ["*"]}
        """,
    "templates/ping.yaml": """
        apiVersion: reconciler/v1
        kind: JobTemplate
        metadata: {name: ping}
        spec:
          playbook: playbooks/ping.yml
        """,
    "templates/deploy.yaml": """
        apiVersion: reconciler/v1
        kind: JobTemplate
        metadata: {name: deploy}
        spec:
          playbook: playbooks/ping.yml
          approval: {required: true, approvers: ["group:leads"], count: 1}
        """,
    "playbooks/ping.yml": """
        - hosts: all
          gather_facts: false
          tasks:
            - debug: {msg: hello}
        """,
    "schedules/all.yaml": """
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {name: nightly-backup, description: "Backs up <b>every</b> database"}
        spec:
          template: ping
          owner: ops
          targets: {roles: [db]}
          when: {daily: {at: "02:00"}}
        ---
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {name: report-quarter-hourly}
        spec:
          template: ping
          owner: ops
          when: {cron: "*/15 * * * *"}
        ---
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {name: weekly-ny-audit}
        spec:
          template: ping
          owner: ops
          when: {cron: "0 6 * * MON", timezone: America/New_York}
        ---
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {name: paused-cleanup}
        spec:
          template: ping
          owner: ops
          enabled: false
          when: {every: 2s}
        ---
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {name: deploy-web}
        spec:
          template: deploy
          owner: ops
          targets: {roles: [web]}
          when: {daily: {at: "04:30"}}
        ---
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {name: deploy-hotfix}
        spec:
          template: deploy
          owner: ops
          targets: {servers: [web-1]}
          when: {at: "2026-01-05T09:00:00"}
        """,
}


@dataclass
class Site:
    """The running dashboard and what the tests sign in with."""

    serve: Serve
    repo: Path
    state: str
    read_key: str
    approve_key: str

    @property
    def url(self) -> str:
        return self.serve.url

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args, "--state", self.state],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def _make_key(state: str, name: str, *args: str) -> str:
    where = ("--state", state, "--format", "json")
    made = subprocess.run(
        [sys.executable, "-m", "reconciler", "api-key", "create", name, *args, *where],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return str(json.loads(made.stdout)["secret"])


def _seed_history(state: str) -> None:
    """Finished runs with per-server results and drift, written as a worker records them."""
    now = datetime.now(UTC)
    with open_store(state) as store:
        results = [
            ("succeeded", [HostResult("db-1", "ok", ok=4, changed=1)]),
            (
                "failed",
                [
                    HostResult("web-1", "ok", ok=3),
                    HostResult("web-2", "failed", ok=1, failed=1),
                ],
            ),
            ("succeeded", [HostResult("web-1", "ok", ok=2, drifted=1)]),
        ]
        for i, (status, hosts) in enumerate(results):
            run = store.create_run(
                NewRun(
                    "ping",
                    "cli",
                    None,
                    schedule="nightly-backup" if i == 0 else None,
                    requested_by="alice",
                    claim_by="seed",
                ),
                now - timedelta(hours=3 - i),
            )
            assert run is not None
            drift = [
                DriftRecord(
                    h.server,
                    "ping",
                    run.id,
                    "drifted" if h.drifted else ("unknown" if h.failed else "in-sync"),
                    {"motd": {"changed": True}} if h.drifted else {},
                    now - timedelta(hours=3 - i),
                )
                for h in hosts
            ]
            assert store.record_outcome(
                run.id, "seed", status, f"{status} (seeded)", hosts, drift, now
            )


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("dashboard")
    repo = tmp / "repo"
    for rel, text in FILES.items():
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(dedent(text).lstrip())
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    state = str(tmp / "state.sqlite")
    import os

    os.environ["RECONCILER_TEST_FAKE_LOG"] = "5"
    try:
        serve = Serve(repo, state, "--workers", "2", fake="4")
    finally:
        os.environ.pop("RECONCILER_TEST_FAKE_LOG")
    try:
        until(
            lambda: _applied(serve),
            30,
            "the daemon to apply the repository",
        )
        read_key = _make_key(state, "dash-reader", "--scope", "read")
        approve_key = _make_key(state, "dash-alice", "--scope", "approve", "--user", "alice")
        _seed_history(state)
        yield Site(serve, repo, state, read_key, approve_key)
    finally:
        serve.stop()


def _applied(serve: Serve) -> bool:
    try:
        return serve.get("/api/status")["applied"]["revision"] is not None  # type: ignore[index]
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: object, name: str) -> Path:
    """Save a PNG of the current page to ``test-artifacts/dashboard/NAME.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), path  # type: ignore[attr-defined]
    return path


def wait_for(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if cond():  # type: ignore[operator]
                return
        except Exception as e:  # a page that is reloading answers with stale elements
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f" ({last})" if last else ""))
