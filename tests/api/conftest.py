"""Helpers of the HTTP API suite: a repository with templates that prompt for every type, API
keys of every scope made through the engine (as ``reconciler api-key create`` does), and a
real ``serve`` process on 127.0.0.1 with the fake executor (:class:`Api`)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from reconciler.engine.keys import create_key
from reconciler.stores import open_store
from tests.daemon.conftest import Serve, apply_dir, make_repo, schedule, serves

__all__ = ["serves"]  # the daemon suite's fixture: stops the serve processes a test starts

TEMPLATES = {
    "deploy": """
        apiVersion: reconciler/v1
        kind: JobTemplate
        metadata: {name: deploy}
        spec:
          type: orchestration
          playbook: playbooks/ping.yml
          apiKeys: [ci, other]
          variables:
            - {name: version, type: string, required: true}
            - {name: replicas, type: integer, default: 1}
            - {name: ratio, type: number}
            - {name: canary, type: boolean}
            - {name: mode, type: choice, choices: [fast, safe]}
            - {name: zones, type: list}
            - {name: token, type: string, sensitive: true}
        """,
    "open": """
        apiVersion: reconciler/v1
        kind: JobTemplate
        metadata: {name: open}
        spec:
          type: orchestration
          playbook: playbooks/ping.yml
          allowNewVariables: true
          variables:
            - {name: greeting, type: string, default: hi}
        """,
    "inventory": """
        apiVersion: reconciler/v1
        kind: Inventory
        metadata: {name: hosts}
        spec:
          servers:
            - {name: web-1, host: 127.0.0.1, roles: [web], environments: [prod]}
            - {name: db-1, host: 127.0.0.1, roles: [db], environments: [prod]}
          roles: {web: {}, db: {}}
          environments: {prod: {}}
        """,
}


@dataclass
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes = b""


def request(
    url: str,
    method: str = "GET",
    *,
    key: str | None = None,
    body: Any = None,
    data: bytes | None = None,
    headers: Mapping[str, str] = {},
) -> Reply:
    """One HTTP request on loopback; error answers are returned, not raised."""
    hdrs = dict(headers)
    if key is not None:
        hdrs["X-API-Key"] = key
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            status, got = r.status, {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        raw = e.read()
        status, got = e.code, {k.lower(): v for k, v in e.headers.items()}
    return Reply(status, json.loads(raw) if raw else None, got, raw)


@dataclass
class Api:
    """A ``serve`` process and the secrets of its keys, by name."""

    serve: Serve
    state: str
    keys: dict[str, str]

    @property
    def url(self) -> str:
        return self.serve.url

    def call(self, path: str, method: str = "GET", key: str | None = "read", **kw: Any) -> Reply:
        """``key`` is a key's name (None: no key at all)."""
        return request(self.url + path, method, key=self.keys[key] if key else None, **kw)

    def trigger(self, query: str, key: str = "ci", **kw: Any) -> Reply:
        return self.call(f"/api/jobs/trigger?{query}", "POST", key=key, **kw)


KEYS: dict[str, tuple[list[str], list[str], str | None]] = {
    "read": (["read"], [], None),
    "ci": (["trigger"], ["deploy", "open", "ping"], None),
    "other": (["trigger"], ["ping"], None),  # listed in deploy's apiKeys, not scoped to it
    "outsider": (["trigger"], ["deploy", "ping"], None),  # scoped, not in deploy's apiKeys
    "approver": (["approve"], [], "alice"),
    "revoked": (["trigger", "read"], ["deploy"], None),
}


def start_api(tmp: Path, state: str, *args: str, fake: str = "0.05") -> Api:
    """Apply the test repository to ``state``, make the keys and start ``serve`` on it."""
    docs = {name: dedent(text).lstrip() for name, text in TEMPLATES.items()}
    root = make_repo(tmp, {"nightly": schedule("nightly", "{daily: {at: '02:00'}}"), **docs})
    now = datetime.now(UTC)
    keys: dict[str, str] = {}
    with open_store(state) as store:
        apply_dir(store, root, now)
        for name, (scopes, templates, user) in KEYS.items():
            _, keys[name] = create_key(store, name, scopes, templates, user, now)  # type: ignore[arg-type]
        store.revoke_api_key("revoked", now)
    serve = Serve(root, state, "--poll", "1h", *args, fake=fake)
    return Api(serve, state, keys)


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One SQLite daemon with one worker, shared by the tests of this package."""
    tmp = tmp_path_factory.mktemp("api")
    a = start_api(tmp, str(tmp / "state.sqlite"), "--workers", "1")
    yield a
    a.serve.stop()
