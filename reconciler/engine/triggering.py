"""Triggering a template from outside (``POST /api/jobs/trigger``, Otter's semantics).

Who calls it: :mod:`reconciler.api.routes.jobs`, after the API key was authenticated. It checks
that the key may trigger the template (its trigger scope and the template's ``apiKeys``),
converts query-parameter values with the code of ``reconciler run --var``, checks every value
and target with :func:`reconciler.engine.running.build_run` (the same checks as the CLI and
schedules) and queues the run as ``reconciler run`` queues one for a live daemon: trigger
``api``, the caller's values recorded on the run as untrusted data (never templated by
Ansible). With an ``Idempotency-Key`` the run and the key are written in one transaction
(:meth:`~reconciler.stores.base.StateStore.create_run_once`). Not pure: it reads and writes the
store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.engine.keys import may_trigger
from reconciler.engine.running import applied_template, build_run, text_vars
from reconciler.errors import ReconcilerError, UsageError
from reconciler.model.common import Targets
from reconciler.stores.base import ApiKey, IdempotencyKey, RunRecord, StateStore

IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600.0
"""How long an ``Idempotency-Key`` is remembered (per API key)."""

MAX_IDEMPOTENCY_KEY = 255


class TriggerForbidden(ReconcilerError):
    """The key may not trigger this template (HTTP 403)."""


class TemplateNotFound(UsageError):
    """No applied template has this name (HTTP 404)."""


class IdempotencyConflict(ReconcilerError):
    """The ``Idempotency-Key`` was used with another request (HTTP 409)."""


@dataclass(frozen=True)
class TriggerRequest:
    """One trigger as the client sent it."""

    template: str
    variables: Mapping[str, Any] = field(default_factory=dict)
    """Typed values (the JSON body's ``variables``)."""
    text_variables: Sequence[tuple[str, str]] = ()
    """Values typed as text (query parameters), converted to each prompt's type."""
    targets: Targets = field(default_factory=Targets)
    simulate: bool = False
    at: datetime | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Triggered:
    """The queued run; ``replayed`` when an earlier request with the same key created it."""

    run: RunRecord
    replayed: bool = False


def request_hash(request: TriggerRequest) -> str:
    """A hash of what the request asks for, whatever its spelling (body or query, key order,
    white space): two requests with one ``Idempotency-Key`` must have the same hash."""
    canonical = {
        "template": request.template,
        "variables": dict(request.variables),
        "text_variables": [list(p) for p in request.text_variables],
        "targets": request.targets.model_dump(),
        "simulate": request.simulate,
        "at": request.at.isoformat() if request.at else None,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def trigger(store: StateStore, key: ApiKey, request: TriggerRequest, now: datetime) -> Triggered:
    """Queue the run ``request`` asks for, as ``key``; raises :class:`TriggerForbidden`,
    :class:`TemplateNotFound`, :class:`IdempotencyConflict` or UsageError (every problem of
    the values and targets in one message)."""
    if "trigger" not in key.scopes:
        raise TriggerForbidden(f"API key {key.name} has no trigger scope")
    idem = request.idempotency_key
    if idem is not None and (
        not idem or len(idem) > MAX_IDEMPOTENCY_KEY or not idem.isascii() or not idem.isprintable()
    ):
        raise UsageError(
            f"Idempotency-Key: use 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )
    if store.get_object("JobTemplate", request.template) is None:
        raise TemplateNotFound(f"no template {json.dumps(request.template)} in the applied state")
    template = applied_template(store, request.template)
    why = may_trigger(key, request.template, template.spec.api_keys)
    if why is not None:
        raise TriggerForbidden(why)
    values = text_vars(template, request.text_variables)
    both = sorted(set(values) & set(request.variables))
    if both:
        raise UsageError(
            "variables given both in the query and in the body: "
            + ", ".join(json.dumps(n) for n in both)
        )
    values.update(request.variables)
    sensitive = [n for n in values if (p := template.spec.prompt(n)) and p.sensitive]
    if sensitive:
        raise UsageError(
            f"variable {json.dumps(sensitive[0])} is sensitive: a value given through the API "
            "is never stored, so the daemon could not run it (give it with valueFrom in a "
            "schedule instead)"
        )
    new, _ = build_run(
        store,
        request.template,
        request.targets,
        values,
        request.simulate,
        "api",
        requested_by=f"api-key:{key.name}",
        not_before=request.at,
    )
    if idem is None:
        run = store.create_run(new, now)
        assert run is not None  # an api run takes no slot
        return Triggered(run)
    done = store.create_run_once(
        new,
        IdempotencyKey(key.name, idem, request_hash(request), IDEMPOTENCY_WINDOW_SECONDS),
        now,
    )
    if done.outcome == "conflict":
        raise IdempotencyConflict(
            f"Idempotency-Key {json.dumps(idem)} was used for another request "
            f"(it created run {done.run.id}); use a new key for a new request"
        )
    return Triggered(done.run, replayed=done.outcome == "replayed")
