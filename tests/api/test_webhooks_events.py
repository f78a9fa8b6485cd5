"""What a delivery says, read from the forges' published example payloads (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.engine.webhooks import delivery_id, normalise_url, read_event, signature_valid

FIXTURES = Path(__file__).parent.parent / "fixtures" / "webhooks"


def load(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((FIXTURES / name).read_text())
    return data


def github(state: str, action: str = "submitted") -> dict[str, object]:
    p = load(
        f"github_pull_request_review_{'dismissed' if action == 'dismissed' else 'submitted'}.json"
    )
    p["review"]["state"] = state  # type: ignore[index]
    return p


@pytest.mark.parametrize(
    ("forge", "event", "payload", "verdict"),
    [
        ("github", "pull_request_review", github("approved"), "approve"),
        ("github", "pull_request_review", github("changes_requested"), "deny"),
        ("github", "pull_request_review", github("commented"), None),
        ("github", "pull_request_review", github("dismissed", "dismissed"), "withdraw"),
        ("gitlab", "Merge Request Hook", load("gitlab_merge_request_approved.json"), "approve"),
        ("gitlab", "Merge Request Hook", load("gitlab_merge_request_unapproved.json"), "withdraw"),
        (
            "gitea",
            "pull_request_review_approved",
            load("gitea_pull_request_review_approved.json"),
            "approve",
        ),
        (
            "gitea",
            "pull_request_review_rejected",
            load("gitea_pull_request_review_rejected.json"),
            "deny",
        ),
    ],
)
def test_each_review_event_maps_to_its_verdict(
    forge: str, event: str, payload: dict[str, object], verdict: str | None
) -> None:
    header = {"github": "x-github-event", "gitlab": "x-gitlab-event", "gitea": "x-gitea-event-type"}
    e = read_event(forge, {header[forge]: event}, payload)
    assert e.kind == "review"
    assert e.verdict == verdict
    assert (e.ignored is None) == (verdict is not None)
    assert e.facts["pr"] and e.facts["reviewer"] and e.facts["commit"] and e.facts["pr_ref"]


def test_the_facts_of_a_github_review_come_from_the_payload() -> None:
    e = read_event("github", {"x-github-event": "pull_request_review"}, github("approved"))
    assert e.facts["pr"] == 2 and e.facts["pr_ref"] == "refs/pull/2/head"
    assert e.facts["commit"] == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    assert e.facts["reviewer"] == "Codertocat" and e.facts["author"] == "Codertocat"
    assert e.facts["base"] == "master"
    gl = read_event(
        "gitlab",
        {"x-gitlab-event": "Merge Request Hook"},
        load("gitlab_merge_request_approved.json"),
    )
    assert gl.facts["pr_ref"] == "refs/merge-requests/1/head"
    assert gl.facts["reviewer"] == "eeshangargtest" and gl.facts["base"] == "feature"
    gitea_event = {"x-gitea-event": "pull_request_approved"}  # older Gitea: no X-Gitea-Event-Type
    gt = read_event("gitea", gitea_event, load("gitea_pull_request_review_approved.json"))
    assert gt.verdict == "approve" and gt.facts["reviewer"] == "reviewer"
    assert gt.facts["author"] == "kostekIV" and gt.facts["pr_ref"] == "refs/pull/4/head"


def test_pushes_and_other_events() -> None:
    push = read_event("gitlab", {"x-gitlab-event": "Push Hook"}, load("gitlab_push.json"))
    assert push.kind == "push" and push.facts["ref"] == "refs/heads/master"
    assert read_event("gitea", {"x-gitea-event": "push"}, load("gitea_push.json")).kind == "push"
    ping = read_event("github", {"x-github-event": "ping"}, load("github_ping.json"))
    assert ping.kind == "other"
    assert read_event("github", {"x-github-event": "a\nb"}, {}).name == "unknown"


def test_the_urls_of_one_repository_compare_equal() -> None:
    same = {
        normalise_url(u)
        for u in (
            "https://github.com/Acme/Ops.git",
            "https://user:token@github.com/acme/ops",
            "git@github.com:acme/ops.git",
            "ssh://git@github.com:22/acme/ops.git",
            "git://github.com/acme/ops.git",
            "https://github.com/acme/ops/",
        )
    }
    assert same == {"github.com/acme/ops"}
    assert normalise_url("https://github.com/acme/ops2") != "github.com/acme/ops"
    assert normalise_url("file:///srv/git/ops.git") == normalise_url("/srv/git/ops")


def test_signatures_of_each_forge() -> None:
    import hashlib
    import hmac

    body = b'{"a": 1}'
    digest = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature_valid("github", "k", {"x-hub-signature-256": "sha256=" + digest}, body)
    assert signature_valid("github", "k", {"x-hub-signature-256": "sha256=" + digest.upper()}, body)
    assert not signature_valid("github", "k", {"x-hub-signature-256": digest}, body)
    assert signature_valid("gitea", "k", {"x-gitea-signature": digest}, body)
    assert not signature_valid("gitea", "k", {"x-gitea-signature": digest}, body + b" ")
    assert signature_valid("gitlab", "k", {"x-gitlab-token": "k"}, body)
    assert not signature_valid("gitlab", "k", {"x-gitlab-token": "k "[:1] + "x"}, body)
    assert not signature_valid("gitlab", "k", {}, body)


def test_a_delivery_without_an_id_is_named_by_its_body() -> None:
    assert delivery_id("github", {"x-github-delivery": "72d3162e-cc78"}, b"x") == "72d3162e-cc78"
    made = delivery_id("gitlab", {}, b"x")
    assert made == delivery_id("gitlab", {"x-gitlab-event-uuid": "bad id with spaces"}, b"x")
    assert made != delivery_id("gitlab", {}, b"y")


def test_a_transient_failure_is_tried_again_and_a_permanent_one_is_not() -> None:
    from reconciler.engine.webhooks import _with_retries
    from reconciler.errors import RevisionNotFound, SourceUnavailable

    calls: list[int] = []

    def flaky() -> tuple[str, str | None]:
        calls.append(1)
        if len(calls) < 3:
            raise SourceUnavailable("cannot fetch: timed out")
        return "done", "ok"

    assert _with_retries(flaky, pause=0) == ("done", "ok")  # type: ignore[arg-type]
    assert len(calls) == 3

    def gone() -> tuple[str, str | None]:
        calls.append(1)
        raise RevisionNotFound("refs/pull/9/head does not exist")

    calls.clear()
    with pytest.raises(RevisionNotFound):
        _with_retries(gone, pause=0)  # type: ignore[arg-type]
    assert len(calls) == 1
