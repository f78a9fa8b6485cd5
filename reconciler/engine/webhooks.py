"""Forge webhooks: deliveries from GitHub, GitLab and Gitea, received and then processed.

Two halves, one module:

* :func:`receive` runs in the HTTP request (``api/routes/webhooks.py`` calls it with the raw
  body): it resolves the shared secret of the *applied* Settings (``webhooks.secretFrom``),
  verifies the forge's signature over the raw bytes before anything is parsed, in constant
  time (:func:`signature_valid`), parses, deduplicates by delivery id (``rc_deliveries``), drops
  what is not for the served repository, and records the delivery's facts (never its body,
  never a header value but the delivery id and event name). A push to the tracked branch asks
  for a reconcile pass (the daemon resolves the head itself); a review is left ``pending``.
* :func:`process_pending` runs in the daemon (:class:`WebhookProcessor`, its webhook thread,
  woken when this replica accepts a delivery and every 5 s for those other replicas took): it
  claims pending deliveries (exactly one replica gets each), fetches the pull request's head
  ref, loads the desired state at the reviewed commit and at the merge base, and records the
  review of the schedules the pull request changes through :mod:`reconciler.engine.approving`.

Who calls it: ``api/routes/webhooks.py`` (:func:`receive`), ``engine/daemon.py``
(:class:`WebhookProcessor`), ``bench/bench_webhooks.py``.

I/O: the store, the Git source, the secret's environment variable or file. The parsing helpers
(:func:`delivery_id`, :func:`read_event`, :func:`normalise_url`) are pure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

from reconciler.clock import Clock
from reconciler.errors import ReconcilerError, SourceError, StateError
from reconciler.model.common import EnvOrFile
from reconciler.model.desired import DesiredState
from reconciler.model.settings import SettingsSpec
from reconciler.stores.base import Delivery, DeliveryStatus, JsonValue, StateStore

log = logging.getLogger("reconciler.webhooks")

Forge = Literal["github", "gitlab", "gitea"]
FORGES: tuple[str, ...] = get_args(Forge)

Outcome = Literal["accepted", "ignored", "duplicate", "unauthorized", "bad-request"]
"""How a delivery was answered: ``accepted`` (a push requested a pass, or a review waits for
the daemon), ``ignored`` (recorded, nothing to do: the detail says why), ``duplicate`` (a
replay of a recorded delivery: nothing done), ``unauthorized`` (401: no secret configured, or
the signature or token is missing or wrong), ``bad-request`` (400: not a JSON object)."""

Verdict = Literal["approve", "deny", "withdraw"]

#: The header that carries each forge's signature (GitHub, Gitea) or token (GitLab).
SIGNATURE_HEADERS: dict[str, str] = {
    "github": "x-hub-signature-256",
    "gitea": "x-gitea-signature",
    "gitlab": "x-gitlab-token",
}
_DELIVERY_HEADERS = {
    "github": "x-github-delivery",
    "gitea": "x-gitea-delivery",
    "gitlab": "x-gitlab-event-uuid",
}
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_SAFE_EVENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")

#: A claimed delivery whose replica died is claimed again after this long.
STALE_CLAIM_SECONDS = 300.0


# --------------------------------------------------------------------------------------------
# the shared secret and the signature


class NoSecret(Exception):
    """No webhook secret can be had: not configured, or its source cannot be read."""


def applied_settings(store: StateStore) -> SettingsSpec:
    """The Settings of the state in force (the defaults when none is applied)."""
    from reconciler.model.documents import Settings
    from reconciler.planning.plan import SETTINGS_NAME

    rec = store.get_object("Settings", SETTINGS_NAME)
    if rec is None:
        return SettingsSpec()
    try:
        return Settings.model_validate_json(rec.body).spec
    except ValueError:  # written by another version: no secret can be read from it
        return SettingsSpec()


def resolve_secret(source: EnvOrFile) -> str:
    """Read ``secretFrom`` now (an environment variable of ``serve``, or a file)."""
    if source.env is not None:
        value = os.environ.get(source.env)
        if not value:
            raise NoSecret(
                f"the webhook secret's environment variable {source.env} is not set for serve"
            )
        return value
    assert source.file is not None
    try:
        value = Path(source.file).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as e:
        raise NoSecret(f"cannot read the webhook secret file {source.file}: {e.strerror}") from None
    if not value:
        raise NoSecret(f"the webhook secret file {source.file} is empty")
    return value


def webhook_secret(settings: SettingsSpec) -> str:
    """The shared secret of the applied Settings; :class:`NoSecret` says why there is none."""
    if settings.webhooks is None:
        raise NoSecret(
            "no webhook secret is configured: set Settings webhooks.secretFrom ({env: NAME} "
            "or {file: PATH}) and apply it"
        )
    return resolve_secret(settings.webhooks.secret_from)


def signature_valid(forge: str, secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether the delivery carries the right signature (GitHub ``X-Hub-Signature-256:
    sha256=<hex>``, Gitea ``X-Gitea-Signature: <hex>``, both HMAC-SHA256 of the raw body keyed
    by the secret) or token (GitLab ``X-Gitlab-Token``: the secret itself). Every comparison
    is :func:`hmac.compare_digest` (constant time, also for a value of the wrong length)."""
    given = headers.get(SIGNATURE_HEADERS[forge])
    if not given:
        return False
    presented = given.strip().encode("utf-8", "replace")
    key = secret.encode("utf-8")
    if forge == "gitlab":
        return hmac.compare_digest(presented, key)
    digest = hmac.new(key, body, hashlib.sha256).hexdigest()
    expected = ("sha256=" + digest) if forge == "github" else digest
    return hmac.compare_digest(presented.lower(), expected.encode("ascii"))


def delivery_id(forge: str, headers: Mapping[str, str], body: bytes) -> str:
    """The forge's delivery id (GitHub ``X-GitHub-Delivery``, Gitea ``X-Gitea-Delivery``,
    GitLab ``X-Gitlab-Event-UUID``), else a hash of the body (a replay has the same body)."""
    given = (headers.get(_DELIVERY_HEADERS[forge]) or "").strip()
    if _SAFE_ID.match(given):
        return given
    return "sha256-" + hashlib.sha256(body).hexdigest()[:40]


# --------------------------------------------------------------------------------------------
# what a payload says (pure)


@dataclass(frozen=True)
class Event:
    """The facts of one delivery that matter here."""

    name: str
    """The forge's event name (GitHub ``pull_request_review``, GitLab ``Merge Request Hook``,
    Gitea ``pull_request_review_approved``)."""
    kind: Literal["push", "review", "other"]
    urls: tuple[str, ...]
    facts: dict[str, JsonValue] = field(default_factory=dict)
    verdict: Verdict | None = None
    ignored: str | None = None
    """Why a review event records nothing (a comment, an edit), else None."""


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _urls(payload: Mapping[str, Any], forge: str) -> tuple[str, ...]:
    found: list[str] = []
    places = (
        ("repository", ("clone_url", "ssh_url", "html_url", "git_url", "git_http_url",
                        "git_ssh_url", "url", "homepage")),
        ("project", ("git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url", "url")),
    )  # fmt: skip
    for where, keys in places:
        obj = payload.get(where)
        if isinstance(obj, dict):
            for k in keys:
                v = _text(obj.get(k))
                if v and v not in found and not v.startswith("https://api.github.com/"):
                    found.append(v)
    return tuple(found)


def _event_name(forge: str, headers: Mapping[str, str], payload: Mapping[str, Any]) -> str:
    if forge == "github":
        raw = headers.get("x-github-event", "")
    elif forge == "gitea":
        raw = headers.get("x-gitea-event-type") or headers.get("x-gitea-event", "")
    else:
        raw = headers.get("x-gitlab-event", "") or str(payload.get("object_kind") or "")
    raw = raw.strip()
    return raw if _SAFE_EVENT.match(raw) else "unknown"


def read_event(forge: str, headers: Mapping[str, str], payload: Mapping[str, Any]) -> Event:
    """What a verified, parsed delivery asks for (pure)."""
    name = _event_name(forge, headers, payload)
    urls = _urls(payload, forge)
    facts: dict[str, JsonValue] = {"event": name}
    full = _get(payload, "repository", "full_name") or _get(
        payload, "project", "path_with_namespace"
    )
    if _text(full):
        facts["repository"] = full
    kind_of_gitlab = str(payload.get("object_kind") or "")
    is_push = (forge in ("github", "gitea") and name == "push") or (
        forge == "gitlab" and (name == "Push Hook" or kind_of_gitlab == "push")
    )
    if is_push:
        facts["ref"] = _text(payload.get("ref"))
        facts["head"] = _text(payload.get("after")) or _text(payload.get("checkout_sha"))
        return Event(name, "push", urls, facts)
    if forge == "github" and name == "pull_request_review":
        return _github_review(name, urls, facts, payload)
    if forge == "gitlab" and (name == "Merge Request Hook" or kind_of_gitlab == "merge_request"):
        return _gitlab_review(name, urls, facts, payload)
    if forge == "gitea" and name in (
        "pull_request_review_approved",
        "pull_request_review_rejected",
        "pull_request_approved",
        "pull_request_rejected",
    ):
        return _gitea_review(name, urls, facts, payload)
    action = _text(payload.get("action"))
    if action:
        facts["action"] = action
    return Event(name, "other", urls, facts)


def _pull_facts(facts: dict[str, JsonValue], pr: Any, number: Any, ref_form: str) -> None:
    n = number if isinstance(number, int) and not isinstance(number, bool) else None
    facts["pr"] = n
    facts["pr_ref"] = ref_form.format(n) if n is not None else None
    facts["head"] = _text(_get(pr, "head", "sha"))
    facts["base"] = _text(_get(pr, "base", "ref"))
    facts["author"] = _text(_get(pr, "user", "login")) or _text(_get(pr, "user", "username"))


def _github_review(
    name: str, urls: tuple[str, ...], facts: dict[str, JsonValue], payload: Mapping[str, Any]
) -> Event:
    pr = payload.get("pull_request")
    _pull_facts(facts, pr, _get(pr, "number"), "refs/pull/{}/head")
    action = _text(payload.get("action")) or ""
    state = (_text(_get(payload, "review", "state")) or "").lower()
    facts["action"], facts["state"] = action, state
    facts["reviewer"] = _text(_get(payload, "review", "user", "login")) or _text(
        _get(payload, "sender", "login")
    )
    facts["commit"] = _text(_get(payload, "review", "commit_id")) or facts["head"]
    verdict: Verdict | None = None
    ignored = None
    if action == "dismissed":
        verdict = "withdraw"
    elif action == "submitted" and state == "approved":
        verdict = "approve"
    elif action == "submitted" and state == "changes_requested":
        verdict = "deny"
    elif action == "submitted":
        ignored = f'a review with state "{state}" neither approves nor denies'
    else:
        ignored = f'review action "{action}" changes no decision'
    return Event(name, "review", urls, facts, verdict, ignored)


def _gitlab_review(
    name: str, urls: tuple[str, ...], facts: dict[str, JsonValue], payload: Mapping[str, Any]
) -> Event:
    attrs = payload.get("object_attributes")
    n = _get(attrs, "iid")
    facts["pr"] = n if isinstance(n, int) and not isinstance(n, bool) else None
    facts["pr_ref"] = f"refs/merge-requests/{facts['pr']}/head" if facts["pr"] is not None else None
    facts["head"] = _text(_get(attrs, "last_commit", "id"))
    facts["commit"] = facts["head"]
    facts["base"] = _text(_get(attrs, "target_branch"))
    facts["author"] = _text(_get(payload, "object_attributes", "author", "username"))
    facts["reviewer"] = _text(_get(payload, "user", "username"))
    action = _text(_get(attrs, "action")) or ""
    facts["action"] = facts["state"] = action
    verdict: Verdict | None = None
    ignored = None
    if action in ("approved", "approval"):
        verdict = "approve"
    elif action in ("unapproved", "unapproval"):
        verdict = "withdraw"
    else:
        ignored = f'merge request action "{action or "none"}" is not an approval'
    return Event(name, "review", urls, facts, verdict, ignored)


def _gitea_review(
    name: str, urls: tuple[str, ...], facts: dict[str, JsonValue], payload: Mapping[str, Any]
) -> Event:
    pr = payload.get("pull_request")
    _pull_facts(facts, pr, _get(pr, "number") or payload.get("number"), "refs/pull/{}/head")
    kind = _text(_get(payload, "review", "type")) or name
    facts["action"] = _text(payload.get("action"))
    facts["state"] = kind
    facts["reviewer"] = _text(_get(payload, "sender", "login")) or _text(
        _get(payload, "sender", "username")
    )
    facts["commit"] = facts["head"]
    verdict: Verdict | None = None
    ignored = None
    if "approved" in kind:
        verdict = "approve"
    elif "rejected" in kind:
        verdict = "deny"
    else:
        ignored = f'review type "{kind}" neither approves nor denies'
    return Event(name, "review", urls, facts, verdict, ignored)


def normalise_url(url: str) -> str:
    """A repository URL reduced to ``host/path`` (lower case, no scheme, user, port or
    ``.git``), so the HTTPS, SSH and web URLs of one repository compare equal; a local path
    or ``file://`` URL becomes its real path."""
    u = url.strip()
    scp = re.match(r"^(?:[^/@\s]+@)?([^:/\s]+):(?!//)(.+)$", u)
    if scp and "://" not in u and not os.path.isabs(u):
        host, path = scp.group(1), scp.group(2)
    else:
        parts = urlsplit(u)
        if parts.scheme in ("", "file"):
            local = parts.path if parts.scheme else u
            return os.path.realpath(local).rstrip("/").removesuffix("/.git").removesuffix(".git")
        host, path = parts.hostname or "", parts.path
    path = path.strip("/").removesuffix(".git").rstrip("/")
    return f"{host.lower()}/{path.lower()}"


_remote_cache: dict[str, tuple[float, frozenset[str]]] = {}
_remote_lock = threading.Lock()


def served_urls(repo: str) -> frozenset[str]:
    """The normalised URLs that name the served REPO: the URL itself, or for a local
    repository its path and the URLs of its remotes (kept for 30 s)."""
    from reconciler.sources import git

    with _remote_lock:
        hit = _remote_cache.get(repo)
        if hit is not None and time.monotonic() - hit[0] < 30:
            return hit[1]
    names = {normalise_url(git.without_credentials(repo))}
    if not git.is_url(repo):
        try:
            src = git.GitSource(repo)
            names |= {normalise_url(u) for u in src.remote_urls()}
            names.add(normalise_url(src.git_dir))
            if src.workdir:
                names.add(normalise_url(src.workdir))
        except ReconcilerError:
            pass
    found = frozenset(names)
    with _remote_lock:
        _remote_cache[repo] = (time.monotonic(), found)
    return found


def is_ours(urls: Iterable[str], repo: str) -> bool:
    served = served_urls(repo)
    return any(normalise_url(u) in served for u in urls)


# --------------------------------------------------------------------------------------------
# the request half


@dataclass(frozen=True)
class Receipt:
    """How to answer a delivery."""

    outcome: Outcome
    delivery: str | None
    message: str
    reconcile: bool = False
    """A push to the tracked branch: ask the reconcile loop for a pass."""
    pending: bool = False
    """A review waits for the daemon: wake its webhook processing."""


def receive(
    store: StateStore,
    forge: str,
    headers: Mapping[str, str],
    body: bytes,
    repo: str,
    now: datetime,
) -> Receipt:
    """Verify, parse, deduplicate and record one delivery (``headers`` with lower-case
    names); see the module docstring. Never raises for what a sender controls."""
    settings = applied_settings(store)
    try:
        secret = webhook_secret(settings)
    except NoSecret as e:
        return Receipt("unauthorized", None, f"{e}; the delivery was refused")
    if not signature_valid(forge, secret, headers, body):
        header = SIGNATURE_HEADERS[forge]
        what = "token" if forge == "gitlab" else "signature"
        if not headers.get(header):
            return Receipt("unauthorized", None, f"the {what} is missing (header {header})")
        return Receipt("unauthorized", None, f"the {what} is wrong (header {header})")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        return Receipt("bad-request", None, f"the body is not JSON: {e}")
    except RecursionError:
        return Receipt("bad-request", None, "the body nests deeper than JSON may here")
    if not isinstance(payload, dict):
        return Receipt("bad-request", None, "the body is not a JSON object")
    did = delivery_id(forge, headers, body)
    event = read_event(forge, headers, payload)
    status: DeliveryStatus
    detail: str | None
    answer: Outcome = "ignored"
    reconcile = pending = False
    if not is_ours(event.urls, repo):
        status = "ignored"
        named = event.facts.get("repository") or (event.urls[0] if event.urls else "none")
        detail = f"repository {named} is not the served repository"
    elif event.kind == "push":
        tracked = f"refs/heads/{settings.branch}"
        if event.facts.get("ref") == tracked:
            status, detail, answer, reconcile = "done", "reconcile requested", "accepted", True
        else:
            status = "ignored"
            detail = f"a push to {event.facts.get('ref')}, not the tracked branch {tracked}"
    elif event.kind == "review" and event.verdict is not None:
        missing = [k for k in ("pr", "reviewer", "commit") if not event.facts.get(k)]
        if missing:
            status, detail = "ignored", f"the review names no {', '.join(missing)}"
        else:
            status, detail, answer, pending = "pending", None, "accepted", True
    elif event.kind == "review":
        status, detail = "ignored", event.ignored
    else:
        status, detail = "ignored", f'event "{event.name}" is not used'
    event.facts["verdict"] = event.verdict
    new = store.record_delivery(
        Delivery(forge, did, event.name, now, status, event.facts, detail, None)
    )
    if not new:
        return Receipt("duplicate", did, "this delivery was received before")
    return Receipt(answer, did, detail or "", reconcile, pending)


# --------------------------------------------------------------------------------------------
# the daemon half


@dataclass(frozen=True)
class ReviewFacts:
    """A review as the daemon processes it (from a delivery's facts)."""

    forge: str
    pr: int
    pr_ref: str
    commit: str
    reviewer: str
    verdict: Verdict
    author: str | None
    base: str | None


def process_pending(
    store: StateStore,
    repo: str,
    clock: Clock,
    *,
    limit: int = 20,
) -> int:
    """Claim pending deliveries and process each (see the module docstring); how many."""
    claimed = store.claim_deliveries(clock.now(), limit, STALE_CLAIM_SECONDS)
    for d in claimed:
        status: DeliveryStatus
        try:
            status, detail = _with_retries(partial(process_one, store, repo, d, clock.now()))
        except StateError:
            raise  # the claim lapses and another pass (or replica) takes it again
        except ReconcilerError as e:
            status, detail = "failed", str(e)
        except Exception as e:  # a bug: keep the loop alive, fail this delivery, log it
            log.exception("processing %s delivery %s", d.forge, d.delivery_id)
            status, detail = "failed", f"internal error ({type(e).__name__}); see serve's log"
        log.info(
            "%s delivery %s (%s): %s%s",
            d.forge,
            d.delivery_id,
            d.event,
            status,
            f": {detail}" if detail else "",
        )
        store.finish_delivery(d.forge, d.delivery_id, status, detail, clock.now())
    return len(claimed)


def _with_retries(
    work: Callable[[], tuple[DeliveryStatus, str | None]], attempts: int = 3, pause: float = 1.0
) -> tuple[DeliveryStatus, str | None]:
    """``work()``, again after a transient failure (a fetch that timed out), up to
    ``attempts`` times; the last failure is raised."""
    for attempt in range(attempts):
        try:
            return work()
        except StateError:
            raise
        except ReconcilerError as e:
            if not e.transient or attempt == attempts - 1:
                raise
            time.sleep(pause * (attempt + 1))
    raise AssertionError("unreachable")


def _review_facts(d: Delivery) -> ReviewFacts | None:
    f = d.facts
    pr, ref, commit, reviewer, verdict = (
        f.get("pr"),
        f.get("pr_ref"),
        f.get("commit"),
        f.get("reviewer"),
        f.get("verdict"),
    )
    if not (
        isinstance(pr, int)
        and isinstance(ref, str)
        and isinstance(commit, str)
        and isinstance(reviewer, str)
        and verdict in get_args(Verdict)
    ):
        return None
    author, base = f.get("author"), f.get("base")
    return ReviewFacts(
        d.forge,
        pr,
        ref,
        commit,
        reviewer,
        cast(Verdict, verdict),
        author if isinstance(author, str) else None,
        base if isinstance(base, str) else None,
    )


def process_one(
    store: StateStore, repo: str, d: Delivery, now: datetime
) -> tuple[DeliveryStatus, str | None]:
    """One claimed review delivery: fetch, check the commit, load, map users, record."""
    from reconciler.engine.desired import OpenedSnapshot, load_source, shared_loader
    from reconciler.sources import git

    review = _review_facts(d)
    if review is None:
        return "failed", "the delivery's facts do not describe a review"
    what = f"pull request #{review.pr}"
    try:
        src = git.GitSource(repo, listing_cache=shared_loader().cache)
    except SourceError as e:
        raise SourceError(f"cannot open the served repository: {e}") from None
    head = src.fetch_ref(review.pr_ref)
    if not _SHA.match(review.commit):
        return "failed", f"the reviewed commit {review.commit[:40]!r} is not a full commit SHA"
    if not src.contains(head, review.commit):
        return "failed", (
            f"the reviewed commit {review.commit[:12]} is not the head of {what} "
            f"({review.pr_ref} is {head[:12]}) nor reachable from it"
        )
    snapshot = src.snapshot(review.commit)
    opened = OpenedSnapshot(snapshot, f"commit {review.commit[:12]} of {src.display}", src)
    result = load_source(opened, now)
    if result.desired is None:
        errors = sum(1 for x in result.diagnostics if x.severity.value == "error")
        return "failed", (
            f"commit {review.commit[:12]} of {what} fails validation with {errors} error(s); "
            "nothing can be approved there"
        )
    merge_base = None
    if review.base:
        try:
            base_head = src.resolve(src.default_revision(review.base))
        except ReconcilerError:
            base_head = None
        merge_base = src.merge_base(base_head, head) if base_head else None
    emails = src.author_emails(head, merge_base) if review.base else set()
    before = None
    if merge_base is not None and merge_base != head:
        before = load_source(opened.at(merge_base), now).desired
    return record_review(store, result.desired, before, review, frozenset(emails), now)


def record_review(
    store: StateStore,
    desired: DesiredState,
    before: DesiredState | None,
    review: ReviewFacts,
    emails: frozenset[str],
    now: datetime,
) -> tuple[DeliveryStatus, str]:
    """Record ``review`` through :mod:`reconciler.engine.approving` (the one decision path)
    for the schedules the pull request changes: those whose approval content at the reviewed
    commit (``desired``) differs from the merge base's (``before``). Without a merge base (no
    base branch, or the pull request is merged already) it is every schedule there whose
    content is not applied and active already, so a review never touches schedules the pull
    request leaves alone. The authors: the pull request's author login and the e-mails of
    its commits (``emails``), mapped to Policy users."""
    from reconciler.engine import approving

    user = approving.user_by_login(store, review.reviewer)
    if user is None:
        return "ignored", (
            f"{review.forge} login {review.reviewer} maps to no Policy user "
            "(forgeLogins of the Policy in force)"
        )
    authors = set(approving.users_by_email(store, sorted(emails)))
    if review.author:
        by_login = approving.user_by_login(store, review.author)
        if by_login is not None:
            authors.add(by_login)
    every = approving.approval_hashes(desired)
    hashes = _changed(store, every, before)
    if not hashes:
        return "ignored", (
            f"no schedule that pull request #{review.pr} changes needs approval at "
            f"{review.commit[:12]}"
        )
    results = approving.record_review(
        store,
        hashes,
        approving.Review(
            user=user,
            verdict=review.verdict,
            via=review.forge,
            revision=review.commit,
            reason=f"{review.forge} review of pull request #{review.pr}",
            authors=frozenset(authors),
        ),
        now,
    )
    recorded = [r.message for r in results if r.recorded]
    refused = [r.message for r in results if not r.recorded]
    head = f"{review.verdict} by {user} ({review.forge} {review.reviewer}) for {review.commit[:12]}"
    if not recorded:
        return "ignored", f"{head} refused: " + _lines(refused)
    detail = f"{head}: " + _lines(recorded)
    if refused:
        detail += "; refused: " + _lines(refused)
    return "done", detail


def _changed(
    store: StateStore, every: dict[str, str], before: DesiredState | None
) -> dict[str, str]:
    """The part of ``every`` (schedule -> content hash) that a review is about."""
    from reconciler.engine import approving

    if before is not None:
        old = approving.approval_hashes(before)
        keep = {s for s, h in every.items() if old.get(s) != h}
    else:
        keep = set()
        for s, h in every.items():
            rec = store.get_object("Schedule", s)
            if rec is None or rec.approval_hash != h or rec.state != "active":
                keep.add(s)
    templates = getattr(every, "templates", {})
    return approving.ApprovalHashes(
        {s: every[s] for s in keep}, {s: templates[s] for s in keep if s in templates}
    )


def _lines(messages: list[str], most: int = 10) -> str:
    return "; ".join(messages[:most]) + (
        f" (and {len(messages) - most} more)" if len(messages) > most else ""
    )


class WebhookProcessor:
    """The daemon's webhook thread: processes pending deliveries when woken (a delivery was
    accepted) and every ``every`` seconds (deliveries another replica accepted)."""

    def __init__(self, store: StateStore, repo: str, clock: Clock, *, every: float = 5.0) -> None:
        self.store, self.repo, self.clock, self.every = store, repo, clock, every
        self._wake = threading.Event()
        self.stopping = threading.Event()

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def run_forever(self, on_state_error: Callable[[Exception], None]) -> None:
        while not self.stopping.is_set():
            self._wake.wait(self.every)
            self._wake.clear()
            if self.stopping.is_set():
                return
            try:
                while process_pending(self.store, self.repo, self.clock) and not (
                    self.stopping.is_set()
                ):
                    pass
            except StateError as e:
                on_state_error(e)
            except ReconcilerError as e:
                log.warning("webhook processing: %s", e)
