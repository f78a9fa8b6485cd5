"""Forge webhooks end to end: a real ``serve`` on 127.0.0.1 over a real Git repository with
pull request refs, deliveries signed as GitHub, GitLab and Gitea sign them, built from their
published example payloads."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.engine import webhooks
from tests.api.webhooks_site import (
    SECRET,
    Site,
    fixture,
    open_pull_request,
    post,
    secret_in_env,
    write_docs,
)
from tests.daemon.conftest import Serve
from tests.gitutil import git


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One served local repository for the module, known under the example payloads' URLs
    (its remotes), with the webhook secret in serve's environment."""
    root = tmp_path_factory.mktemp("webhooks")
    repo = root / "repo"
    repo.mkdir()
    write_docs(repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    git(repo, "remote", "add", "origin", "https://github.com/Codertocat/Hello-World.git")
    git(repo, "remote", "add", "gitea", "https://try.gitea.io/kostekIV/test.git")
    git(repo, "remote", "add", "gitlab", "git@gitlab.com:eeshangarg/my-awesome-project.git")
    state = str(root / "state.sqlite")
    with secret_in_env():
        serve = Serve(repo, state, "--workers", "0")
    s = Site(root, serve, state, repo)
    try:
        s.applied(git(repo, "rev-parse", "HEAD"))
        yield s
    finally:
        s.close()
        serve.stop()


# -- the door: signatures, tokens, sizes, bodies, replays


def test_a_missing_or_wrong_signature_or_token_is_401(site: Site) -> None:
    body = json.dumps(fixture("github_ping.json", "github")).encode()
    for forge, event in (("github", "ping"), ("gitea", "push"), ("gitlab", "Push Hook")):
        missing = site.send(forge, event, body, signed={})
        assert missing.status == 401, missing
        assert missing.body["error"]["code"] == "unauthorized"
        assert "missing" in missing.body["error"]["message"]
        wrong = site.send(forge, event, body, signed=sign_wrong(forge, body))
        assert wrong.status == 401 and "wrong" in wrong.body["error"]["message"], wrong
    # a signature of another body, and one of the wrong length, are refused too
    other = hmac.new(SECRET.encode(), body + b" ", hashlib.sha256).hexdigest()
    assert site.send("github", "ping", body, signed={"X-Hub-Signature-256": "sha256=" + other}).status == 401
    assert site.send("github", "ping", body, signed={"X-Hub-Signature-256": "sha256=ab"}).status == 401
    assert site.send("gitlab", "Push Hook", body, signed={"X-Gitlab-Token": SECRET[:-1]}).status == 401
    assert SECRET not in site.serve.log.read_text()


def sign_wrong(forge: str, body: bytes) -> dict[str, str]:
    from tests.api.webhooks_site import sign

    return sign(forge, body, secret="not-the-secret")


def test_the_signature_is_compared_in_constant_time_only() -> None:
    source = inspect.getsource(webhooks.signature_valid)
    assert source.count("hmac.compare_digest(") == 2
    # no secret, signature, token or digest is ever compared with == or !=
    assert not re.search(r"(presented|expected|key|digest|given|secret)\s*[!=]=", source)
    assert not re.search(r"[!=]=\s*(presented|expected|key|digest|given|secret)\b", source)
    headers = {"x-hub-signature-256": "sha256=" + "0" * 63}
    assert not webhooks.signature_valid("github", SECRET, headers, b"{}")


def test_a_body_over_the_limit_is_413_before_it_is_read(site: Site) -> None:
    big = b'{"x": "' + b"a" * (3 * 1024 * 1024) + b'"}'
    answer = site.send("github", "push", big)
    assert answer.status == 413 and answer.body["error"]["code"] == "too-large"


def test_a_truncated_or_non_json_body_is_400(site: Site) -> None:
    whole = json.dumps(fixture("github_push.json", "github")).encode()
    for body in (whole[: len(whole) // 2], b"not json at all", b"[1, 2, 3]", b"\xff\xfe"):
        answer = site.send("github", "push", body)
        assert answer.status == 400, (body[:20], answer)
        assert answer.body["error"]["code"] == "bad-request"


def test_a_replayed_delivery_is_a_duplicate_that_does_nothing(site: Site) -> None:
    payload = fixture("github_ping.json", "github")
    first = site.send("github", "ping", payload, delivery="replay-1")
    assert (first.status, first.body) == (202, {"status": "ignored", "delivery": "replay-1"})
    again = site.send("github", "ping", payload, delivery="replay-1")
    assert (again.status, again.body) == (202, {"status": "duplicate", "delivery": "replay-1"})
    # without a delivery id, the body's hash is the id
    for forge, event in (("gitlab", "Push Hook"),):
        body = json.dumps(fixture("gitlab_push.json", "gitlab", "other.example/x/y")).encode()
        headers = {"X-Gitlab-Event": event, "X-Gitlab-Token": SECRET}
        a = post(f"{site.serve.url}/api/webhooks/{forge}", body, headers)
        b = post(f"{site.serve.url}/api/webhooks/{forge}", body, headers)
        assert a.status == b.status == 202
        assert (a.body["status"], b.body["status"]) == ("ignored", "duplicate")
        assert a.body["delivery"] == b.body["delivery"]


def test_a_delivery_for_another_repository_is_recorded_as_ignored(site: Site) -> None:
    push = fixture("github_push.json", "github", "github.com/someone/else")
    push["ref"] = "refs/heads/main"
    answer = site.send("github", "push", push, delivery="elsewhere-1")
    assert answer.body == {"status": "ignored", "delivery": "elsewhere-1"}
    d = site.store.get_delivery("github", "elsewhere-1")
    assert d is not None and d.status == "ignored"
    assert "not the served repository" in (d.detail or "")
    # facts, never the body: no commit message or pusher e-mail of the payload is stored
    assert "commits" not in d.facts and "pusher" not in d.facts


def test_no_webhook_secret_in_the_applied_settings_is_401_saying_so(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    write_docs(repo)
    (repo / "reconciler.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Settings\nspec: {timezone: UTC}\n"
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    serve = Serve(repo, str(tmp_path / "state.sqlite"), "--workers", "0")
    try:
        body = b"{}"
        answer = post(f"{serve.url}/api/webhooks/github", body, {"X-GitHub-Event": "ping", **sign_ok("github", body)})
        assert answer.status == 401
        assert "no webhook secret is configured" in answer.body["error"]["message"]
    finally:
        serve.stop()


def sign_ok(forge: str, body: bytes) -> dict[str, str]:
    from tests.api.webhooks_site import sign

    return sign(forge, body)
