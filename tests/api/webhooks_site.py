"""A served repository for the webhook tests: a real Git repository with pull request refs,
a real ``serve`` on 127.0.0.1, and deliveries signed as each forge signs them, built from the
forges' published example payloads (tests/fixtures/webhooks/) rewritten to point at it."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent
from typing import Any

from reconciler.stores import StateStore, open_store
from reconciler.stores.base import Delivery
from tests.daemon.conftest import Serve
from tests.gitutil import git

SECRET = "webhook-secret-for-tests"
SECRET_ENV = "RC_TEST_WEBHOOK_SECRET"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "webhooks"

#: The repository URLs of the published examples, per forge (the served repository is known
#: under these as its remotes, or the test rewrites them to the served URL).
EXAMPLE_REPO = {
    "github": "github.com/Codertocat/Hello-World",
    "gitea": "try.gitea.io/kostekIV/test",
    "gitlab": "gitlab.com/eeshangarg/my-awesome-project",
}

DOCS = {
    "reconciler.yaml": f"""
        apiVersion: reconciler/v1
        kind: Settings
        spec:
          timezone: UTC
          webhooks: {{secretFrom: {{env: {SECRET_ENV}}}}}
        """,
    "policy.yaml": """
        apiVersion: reconciler/v1
        kind: Policy
        metadata: {name: ops}
        spec:
          users:
            - {name: alice, email: alice@example.com, forgeLogins: [alice-gh], groups: [sre]}
            - {name: bob, email: bob@example.com, forgeLogins: [bob-gh], groups: [sre]}
          permissions:
            - {group: sre, run: ["*"], approve: ["*"]}
        """,
    "templates.yaml": """
        apiVersion: reconciler/v1
        kind: JobTemplate
        metadata: {name: guarded}
        spec:
          type: orchestration
          playbook: playbooks/ping.yml
          approval: {required: true, approvers: [alice, bob], count: 1}
        """,
    "playbooks/ping.yml": """
        - hosts: all
          gather_facts: false
          tasks:
            - debug: {msg: hello}
        """,
}


def schedule_yaml(name: str) -> str:
    return dedent(
        f"""\
        apiVersion: reconciler/v1
        kind: Schedule
        metadata: {{name: {name}}}
        spec:
          template: guarded
          owner: alice
          when: {{every: 1h}}
        """
    )


def write_docs(root: Path) -> None:
    for rel, text in DOCS.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(dedent(text).lstrip())


def author_env(email: str) -> dict[str, str]:
    name = email.split("@")[0]
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email}


def sign(forge: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    """The signature or token header of ``forge`` for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if forge == "github":
        return {"X-Hub-Signature-256": "sha256=" + digest}
    if forge == "gitea":
        return {"X-Gitea-Signature": digest}
    return {"X-Gitlab-Token": secret}


def event_headers(forge: str, event: str, delivery: str) -> dict[str, str]:
    if forge == "github":
        return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery}
    if forge == "gitea":
        short = event.replace("_review", "")  # X-Gitea-Event: pull_request_approved
        return {"X-Gitea-Event": short, "X-Gitea-Event-Type": event, "X-Gitea-Delivery": delivery}
    return {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": delivery}


def fixture(name: str, forge: str, repo_url: str | None = None) -> dict[str, Any]:
    """A published example payload, its repository URLs pointing at ``repo_url`` (host/path,
    or a file:// URL) when given."""
    text = (FIXTURES / name).read_text()
    if repo_url is not None:
        old = EXAMPLE_REPO[forge]
        host, _, path = old.partition("/")
        if repo_url.startswith("file://"):
            for form in (f"https://{old}.git", f"https://{old}", f"git@{host}:{path}.git"):
                text = text.replace(form, repo_url)
            text = text.replace(f"git://{old}.git", repo_url)
        else:
            new_host, _, new_path = repo_url.partition("/")
            text = text.replace(old, repo_url).replace(f"{host}:{path}", f"{new_host}:{new_path}")
    data: dict[str, Any] = json.loads(text)
    return data


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


def post(
    url: str, body: bytes, headers: dict[str, str], content_type: str = "application/json"
) -> Answer:
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", content_type)
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return Answer(r.status, json.load(r))
    except urllib.error.HTTPError as e:
        return Answer(e.code, json.load(e))


class Site:
    """The served repository, its ``serve`` and its state."""

    def __init__(self, root: Path, serve: Serve, state: str, repo: Path) -> None:
        self.root, self.serve, self.state, self.repo = root, serve, state, repo
        self._store: StateStore | None = None
        self._n = 0

    @property
    def store(self) -> StateStore:
        if self._store is None:
            self._store = open_store(self.state, lock_timeout=10)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def next_id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{time.monotonic_ns()}-{self._n}"

    def send(
        self,
        forge: str,
        event: str,
        payload: dict[str, Any] | bytes,
        delivery: str | None = None,
        signed: dict[str, str] | None = None,
    ) -> Answer:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = event_headers(forge, event, delivery or self.next_id(forge))
        headers.update(sign(forge, body) if signed is None else signed)
        return post(f"{self.serve.url}/api/webhooks/{forge}", body, headers)

    def processed(self, forge: str, delivery: str, timeout: float = 20) -> Delivery:
        """The delivery once the daemon is done with it (done, ignored or failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = self.store.get_delivery(forge, delivery)
            if d is not None and d.status not in ("pending", "processing"):
                return d
            time.sleep(0.05)
        raise AssertionError(f"delivery {delivery} was not processed: {d}")

    def applied(self, revision: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.store.info().revision == revision:
                return
            time.sleep(0.05)
        raise AssertionError(
            f"revision {revision[:12]} was not applied:\n{self.serve.log.read_text()}"
        )


def open_pull_request(repo: Path, ref: str, branch: str, name: str, email: str) -> str:
    """A branch off main that adds schedule ``name`` (authored by ``email``), published as the
    forge publishes a pull request's head (``ref``); main stays checked out. Returns its SHA."""
    git(repo, "checkout", "-q", "-b", branch, "main")
    (repo / "schedules").mkdir(exist_ok=True)
    (repo / "schedules" / f"{name}.yaml").write_text(schedule_yaml(name))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"schedule {name}", env=author_env(email))
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "update-ref", ref, sha)
    git(repo, "checkout", "-q", "main")
    return sha


class UrlRepo:
    """A Git URL where :class:`~tests.daemon.conftest.Serve` takes a path (its argument is
    ``str(repo)``; its log goes next to ``repo.parent``)."""

    def __init__(self, url: str, parent: Path) -> None:
        self.url, self.parent = url, parent

    def __str__(self) -> str:
        return self.url


@contextmanager
def secret_in_env() -> Iterator[None]:
    """``serve`` (started inside) reads the webhook secret from its environment."""
    old = os.environ.get(SECRET_ENV)
    os.environ[SECRET_ENV] = SECRET
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = old
