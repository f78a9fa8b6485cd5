"""Forge webhooks end to end: a real ``serve`` on 127.0.0.1 over a real Git repository with
pull request refs, deliveries signed as GitHub, GitLab and Gitea sign them, built from their
published example payloads."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import re
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from reconciler.engine import webhooks
from tests.api.webhooks_site import (
    SECRET,
    Site,
    UrlRepo,
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
    assert (
        site.send("github", "ping", body, signed={"X-Hub-Signature-256": "sha256=" + other}).status
        == 401
    )
    assert (
        site.send("github", "ping", body, signed={"X-Hub-Signature-256": "sha256=ab"}).status == 401
    )
    assert (
        site.send("gitlab", "Push Hook", body, signed={"X-Gitlab-Token": SECRET[:-1]}).status == 401
    )
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


def raw_post(url: str, head: str, chunks: Iterator[bytes]) -> tuple[int, bytes]:
    """POST ``head`` then ``chunks`` until the server answers (it may answer before the body
    is sent); the status and the answer's body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # answered already
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 40:
            part = sock.recv(65536)
            if not part:
                break
            data += part
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def test_a_body_over_the_limit_is_413_before_it_is_read(site: Site) -> None:
    path = "/api/webhooks/github"
    common = f"POST {path} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
    # Content-Length says too much: answered before a byte of the body is sent
    status, body = raw_post(
        site.serve.url, common + f"Content-Length: {3 * 1024 * 1024 + 1}\r\n\r\n", iter(())
    )
    assert status == 413 and b"too-large" in body
    # no length given: cut off once the stream passes the limit
    chunk = b"a" * 65536
    chunked = (b"%x\r\n" % len(chunk)) + chunk + b"\r\n"
    status, body = raw_post(
        site.serve.url,
        common + "Transfer-Encoding: chunked\r\n\r\n",
        iter([chunked] * 64),  # 4 MiB
    )
    assert status == 413 and b"too-large" in body


def test_a_truncated_or_non_json_body_is_400(site: Site) -> None:
    whole = json.dumps(fixture("github_push.json", "github")).encode()
    nested = b"[" * 100_000 + b"]" * 100_000
    for body in (whole[: len(whole) // 2], b"not json at all", b"[1, 2, 3]", b"\xff\xfe", nested):
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
        answer = post(
            f"{serve.url}/api/webhooks/github",
            body,
            {"X-GitHub-Event": "ping", **sign_ok("github", body)},
        )
        assert answer.status == 401
        assert "no webhook secret is configured" in answer.body["error"]["message"]
    finally:
        serve.stop()


def sign_ok(forge: str, body: bytes) -> dict[str, str]:
    from tests.api.webhooks_site import sign

    return sign(forge, body)


# -- reviews: the daemon fetches the pull request's head and records the decision


def github_review(
    n: int, sha: str, reviewer: str, state: str = "approved", author: str = "bob-gh"
) -> dict[str, object]:
    name = "dismissed" if state == "dismissed" else "submitted"
    p = fixture(f"github_pull_request_review_{name}.json", "github")
    p["review"]["state"] = state
    p["review"]["user"]["login"] = reviewer
    p["review"]["commit_id"] = sha
    pr = p["pull_request"]
    pr["number"] = n
    pr["head"]["sha"] = sha
    pr["base"]["ref"] = "main"
    pr["user"]["login"] = author
    return p


def state_of(site: Site, schedule: str) -> str:
    rec = site.store.get_object("Schedule", schedule)
    assert rec is not None, f"schedule {schedule} is not applied"
    return rec.state or ""


def merge(site: Site, branch: str, fast_forward: bool = True) -> None:
    how = "--ff-only" if fast_forward else "--no-ff"
    git(site.repo, "merge", "-q", how, branch, "-m", f"Merge {branch}")
    site.applied(git(site.repo, "rev-parse", "HEAD"))


def test_a_github_approval_of_the_head_then_a_fast_forward_merge_makes_it_active(
    site: Site,
) -> None:
    sha = open_pull_request(site.repo, "refs/pull/11/head", "pr-11", "nightly", "bob@example.com")
    did = site.next_id("gh")
    answer = site.send("github", "pull_request_review", github_review(11, sha, "alice-gh"), did)
    assert answer.body == {"status": "accepted", "delivery": did}
    d = site.processed("github", did)
    assert d.status == "done", d.detail
    assert d.facts["reviewer"] == "alice-gh" and d.facts["pr"] == 11
    assert d.facts["commit"] == sha and d.facts["author"] == "bob-gh"
    merge(site, "pr-11")
    assert state_of(site, "nightly") == "active"


def test_a_gitlab_approval_then_a_merge_commit_makes_it_active(site: Site) -> None:
    sha = open_pull_request(
        site.repo, "refs/merge-requests/3/head", "mr-3", "weekly", "bob@example.com"
    )
    git(site.repo, "commit", "-q", "--allow-empty", "-m", "main moves on")  # a real merge
    p = fixture("gitlab_merge_request_approved.json", "gitlab")
    attrs = p["object_attributes"]
    attrs["iid"], attrs["target_branch"] = 3, "main"
    attrs["last_commit"]["id"] = sha
    p["user"]["username"] = "alice-gh"
    did = site.next_id("gl")
    assert site.send("gitlab", "Merge Request Hook", p, did).body["status"] == "accepted"
    d = site.processed("gitlab", did)
    assert d.status == "done", d.detail
    merge(site, "mr-3", fast_forward=False)
    assert state_of(site, "weekly") == "active"


def test_a_gitea_rejection_denies_the_schedule(site: Site) -> None:
    sha = open_pull_request(site.repo, "refs/pull/5/head", "pr-5", "monthly", "bob@example.com")
    p = fixture("gitea_pull_request_review_rejected.json", "gitea")
    p["number"] = p["pull_request"]["number"] = 5
    p["pull_request"]["head"]["sha"] = sha
    p["pull_request"]["base"]["ref"] = "main"
    p["pull_request"]["user"]["login"] = "bob-gh"
    p["sender"]["login"] = "alice-gh"
    did = site.next_id("gt")
    assert site.send("gitea", "pull_request_review_rejected", p, did).body["status"] == "accepted"
    d = site.processed("gitea", did)
    assert d.status == "done", d.detail
    merge(site, "pr-5")
    assert state_of(site, "monthly") == "denied"
    # a review is about what its pull request changes: no other schedule was denied
    assert {a.schedule for a in site.store.list_approvals() if a.decision == "deny"} == {"monthly"}


def test_a_dismissed_review_withdraws_the_approval(site: Site) -> None:
    sha = open_pull_request(site.repo, "refs/pull/12/head", "pr-12", "hourly", "bob@example.com")
    first, second = site.next_id("gh"), site.next_id("gh")
    site.send("github", "pull_request_review", github_review(12, sha, "alice-gh"), first)
    assert site.processed("github", first).status == "done"
    site.send(
        "github", "pull_request_review", github_review(12, sha, "alice-gh", "dismissed"), second
    )
    d = site.processed("github", second)
    assert d.status == "done", d.detail
    merge(site, "pr-12")
    assert state_of(site, "hourly") == "awaiting-approval"


def test_the_pull_request_authors_own_approval_never_counts(site: Site) -> None:
    sha = open_pull_request(site.repo, "refs/pull/13/head", "pr-13", "mine", "bob@example.com")
    did = site.next_id("gh")
    site.send("github", "pull_request_review", github_review(13, sha, "bob-gh"), did)
    d = site.processed("github", did)
    assert d.status == "ignored" and "authored this change" in (d.detail or ""), d.detail
    # the commit's author, not only the pull request's author login, is the change's author
    sha2 = open_pull_request(site.repo, "refs/pull/14/head", "pr-14", "theirs", "bob@example.com")
    did2 = site.next_id("gh")
    site.send("github", "pull_request_review", github_review(14, sha2, "bob-gh", author="x"), did2)
    assert "authored this change" in (site.processed("github", did2).detail or "")
    merge(site, "pr-13")
    assert state_of(site, "mine") == "awaiting-approval"
    git(site.repo, "merge", "-q", "--no-ff", "pr-14", "-m", "Merge pr-14")
    site.applied(git(site.repo, "rev-parse", "HEAD"))
    assert state_of(site, "theirs") == "awaiting-approval"


def test_a_review_from_a_login_that_maps_to_no_policy_user_is_ignored(site: Site) -> None:
    sha = open_pull_request(site.repo, "refs/pull/15/head", "pr-15", "strange", "bob@example.com")
    did = site.next_id("gh")
    assert (
        site.send("github", "pull_request_review", github_review(15, sha, "mallory"), did).body[
            "status"
        ]
        == "accepted"
    )
    d = site.processed("github", did)
    assert d.status == "ignored"
    assert "mallory maps to no Policy user" in (d.detail or "")


def test_a_reviewed_commit_outside_the_pull_request_fails_with_the_reason(site: Site) -> None:
    open_pull_request(site.repo, "refs/pull/16/head", "pr-16", "elsewhere", "bob@example.com")
    other = open_pull_request(site.repo, "refs/heads/side", "side", "side", "bob@example.com")
    did = site.next_id("gh")
    p = github_review(16, other, "alice-gh")
    site.send("github", "pull_request_review", p, did)
    d = site.processed("github", did)
    assert d.status == "failed"
    assert "is not the head of pull request #16" in (d.detail or "")
    # a pull request ref the repository does not hold fails too
    did = site.next_id("gh")
    site.send("github", "pull_request_review", github_review(99, other, "alice-gh"), did)
    d = site.processed("github", did)
    assert d.status == "failed" and "refs/pull/99/head" in (d.detail or "")


def test_a_comment_review_and_other_events_are_ignored_at_once(site: Site) -> None:
    p = github_review(17, "0" * 40, "alice-gh", state="commented")
    did = site.next_id("gh")
    assert site.send("github", "pull_request_review", p, did).body["status"] == "ignored"
    d = site.store.get_delivery("github", did)
    assert (
        d is not None
        and d.status == "ignored"
        and "neither approves nor denies" in (d.detail or "")
    )
    pr_event = fixture("github_pull_request_review_submitted.json", "github")
    assert site.send("github", "pull_request", pr_event).body["status"] == "ignored"


# -- pushes: a pass at once, the daemon resolving the head itself


def test_a_push_to_the_tracked_branch_requests_a_pass_at_once(tmp_path: Path) -> None:
    forge = tmp_path / "forge.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(forge))
    work = tmp_path / "work"
    work.mkdir()
    write_docs(work)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "initial")
    git(work, "push", "-q", str(forge), "main")
    url = forge.as_uri()
    with secret_in_env():
        serve = Serve(
            cast(Path, UrlRepo(url, tmp_path)),
            str(tmp_path / "state.sqlite"),
            "--workers",
            "0",
            "--poll",
            "1h",
        )
    s = Site(tmp_path, serve, str(tmp_path / "state.sqlite"), work)
    try:
        s.applied(git(work, "rev-parse", "HEAD"))
        # a pull request on the forge: its head is fetched from there
        sha = open_pull_request(work, "refs/heads/pr-21", "pr-21", "remote", "bob@example.com")
        git(work, "push", "-q", str(forge), "pr-21:refs/pull/21/head")
        review = github_review(21, sha, "alice-gh")
        rewritten = json.loads(
            json.dumps(review).replace("https://github.com/Codertocat/Hello-World.git", url)
        )
        did = s.next_id("gh")
        assert s.send("github", "pull_request_review", rewritten, did).body["status"] == "accepted"
        assert s.processed("github", did).status == "done"
        # merged on the forge; the push webhook makes the pass (the poll is an hour)
        git(work, "merge", "-q", "--ff-only", "pr-21")
        git(work, "push", "-q", str(forge), "main")
        push = fixture("github_push.json", "github", url)
        push["ref"], push["after"] = "refs/heads/main", "f" * 40  # never trusted
        other = dict(push, ref="refs/heads/feature")
        assert s.send("github", "push", other).body["status"] == "ignored"
        assert s.send("github", "push", push).body["status"] == "accepted"
        s.applied(sha, timeout=15)
        assert state_of(s, "remote") == "active"
        assert "reconcile requested: github push" in serve.log.read_text()
    finally:
        s.close()
        serve.stop()
