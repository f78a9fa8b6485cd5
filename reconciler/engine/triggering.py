"""Triggering a template from outside (``POST /api/jobs/trigger``, Otter's semantics).

Who calls it: :mod:`reconciler.api.routes.jobs`, after the API key was authenticated. It checks
that the key may trigger the template (its trigger scope and the template's ``apiKeys``),
converts query-parameter values with the code of ``reconciler run --var``, checks every value
and target with :func:`reconciler.engine.running.build_run` (the same checks as the CLI and
schedules) and queues the run as ``reconciler run`` queues one for a live daemon: trigger
``api``, the caller's values recorded on the run as untrusted data (never templated by
Ansible). With an ``Idempotency-Key`` the run and the key are written in one transaction
(:meth:`~reconciler.stores.base.StateStore.create_run_once`). :class:`GroupCommit` writes the
runs of concurrent triggers in one transaction (a commit costs a flush to disk; many triggers
share it). Not pure: it reads and writes the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.engine.keys import may_trigger
from reconciler.engine.running import (
    applied_inventory,
    applied_template,
    build_run,
    text_vars,
)
from reconciler.errors import ReconcilerError, StateUnavailable, UsageError
from reconciler.model.common import Targets
from reconciler.model.documents import JobTemplate
from reconciler.planning.plan import ResolvedInventory
from reconciler.stores.base import (
    ApiKey,
    IdempotencyKey,
    IdempotentRun,
    NewRun,
    RunRecord,
    StateStore,
)

log = logging.getLogger("reconciler.api")

Writer = Callable[[NewRun, IdempotencyKey | None, datetime], IdempotentRun]
"""Writes one run (with its idempotency key, or none): :class:`GroupCommit.write`, or a store's
own ``create_runs`` (:func:`direct_writer`)."""


def direct_writer(store: StateStore) -> Writer:
    """Each run in its own transaction, on ``store``."""

    def write(run: NewRun, key: IdempotencyKey | None, now: datetime) -> IdempotentRun:
        return store.create_runs([(run, key)], now)[0]

    return write


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


def request_hash(
    template: str, values: Mapping[str, Any], targets: Targets, simulate: bool, at: datetime | None
) -> str:
    """A hash of what a trigger asks for, whatever its spelling (values in the body or the
    query, key order, white space, the offset of ``at``): two requests with one
    ``Idempotency-Key`` must have the same hash."""
    canonical = {
        "template": template,
        "variables": dict(values),
        "targets": targets.model_dump(),
        "simulate": simulate,
        "at": at.astimezone(UTC).isoformat() if at else None,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def trigger(
    store: StateStore,
    key: ApiKey,
    request: TriggerRequest,
    now: datetime,
    write: Writer | None = None,
    cache: AppliedCache | None = None,
) -> Triggered:
    """Queue the run ``request`` asks for, as ``key``; raises :class:`TriggerForbidden`,
    :class:`TemplateNotFound`, :class:`IdempotencyConflict` or UsageError (every problem of
    the values and targets in one message). ``write`` writes the run (default: on ``store``,
    in a transaction of its own); ``cache`` keeps what was read of the applied state between
    calls (:class:`AppliedCache`)."""
    if "trigger" not in key.scopes:
        raise TriggerForbidden(f"API key {key.name} has no trigger scope")
    idem = request.idempotency_key
    if idem is not None and (
        not idem or len(idem) > MAX_IDEMPOTENCY_KEY or not idem.isascii() or not idem.isprintable()
    ):
        raise UsageError(
            f"Idempotency-Key: use 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )
    view = (cache or AppliedCache()).view(store)
    template = view.template(store, request.template)
    if template is None:
        raise TemplateNotFound(f"no template {json.dumps(request.template)} in the applied state")
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
        template=template,
        applied=(view.revision, view.inventory, view.signing_key),
    )
    idem_key = (
        None
        if idem is None
        else IdempotencyKey(
            key.name,
            idem,
            request_hash(request.template, values, request.targets, request.simulate, request.at),
            IDEMPOTENCY_WINDOW_SECONDS,
        )
    )
    done = (write or direct_writer(store))(new, idem_key, now)
    if done.outcome == "conflict":
        raise IdempotencyConflict(
            f"Idempotency-Key {json.dumps(idem)} was used for another request "
            f"(it created run {done.run.id}); use a new key for a new request"
        )
    return Triggered(done.run, replayed=done.outcome == "replayed")


@dataclass
class AppliedView:
    """The applied state a trigger is checked against, as of one serial of the state."""

    serial: int
    location: str
    revision: str | None
    inventory: ResolvedInventory
    signing_key: str | None = None
    templates: dict[str, JobTemplate] = field(default_factory=dict)

    def template(self, store: StateStore, name: str) -> JobTemplate | None:
        """The applied template ``name`` (None: there is none)."""
        got = self.templates.get(name)
        if got is None:
            try:
                got = applied_template(store, name)
            except UsageError:
                return None
            self.templates[name] = got
        return got


class AppliedCache:
    """What triggers read of the applied state, kept while the state's serial stays the same
    (every write to the applied objects bumps it): a trigger then reads only the serial, not
    the template and the inventory again. One per HTTP app; safe across threads (a view is
    replaced whole; a template read twice by two threads is the same content)."""

    def __init__(self) -> None:
        self._view: AppliedView | None = None

    def view(self, store: StateStore) -> AppliedView:
        info = store.info()
        view = self._view
        if view is None or view.serial != info.serial or view.location != info.location:
            view = AppliedView(
                info.serial,
                info.location,
                info.revision,
                applied_inventory(store),
                info.signing_key,
            )
            self._view = view
        return view


@dataclass
class _Pending:
    run: NewRun
    key: IdempotencyKey | None
    now: datetime
    done: threading.Event = field(default_factory=threading.Event)
    result: IdempotentRun | None = None
    error: BaseException | None = None


class GroupCommit:
    """One writer thread that writes the runs of concurrent triggers together: a request
    thread hands its run over (:meth:`write`) and waits; the writer takes everything waiting
    (at most ``max_batch``) into one transaction (:meth:`StateStore.create_runs`), so N
    triggers that arrive together cost one commit, not N. A lone trigger waits for no one.
    If a batch fails, its runs are written one by one, so one bad run fails only itself.
    The writer opens its own store connection and is a daemon thread: a transaction is
    atomic, so stopping the process mid-batch leaves no half-written run."""

    def __init__(
        self, open_store: Callable[[], StateStore], max_batch: int = 200, timeout: float = 60.0
    ) -> None:
        self._open = open_store
        self._max = max_batch
        self._timeout = timeout
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._thread: threading.Thread | None = None
        self._store: StateStore | None = None
        self._closed = False

    def write(self, run: NewRun, key: IdempotencyKey | None, now: datetime) -> IdempotentRun:
        item = _Pending(run, key, now)
        with self._cond:
            if self._closed:
                raise StateUnavailable("the server is stopping; retry")
            self._pending.append(item)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="api-run-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        if not item.done.wait(self._timeout):
            raise StateUnavailable("the state did not take the run in time; retry")
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def close(self) -> None:
        """Write what is waiting, stop the writer thread and close its store."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(self._timeout)
        self._reopen()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            store = self._store = self._store or self._open()
            results = store.create_runs([(i.run, i.key) for i in batch], max(i.now for i in batch))
        except Exception as e:
            if self._store is not None and isinstance(e, StateUnavailable):
                self._reopen()
            if len(batch) > 1:
                for item in batch:
                    self._commit([item])
                return
            log.debug("a triggered run could not be written: %s", e)
            batch[0].error = e
            batch[0].done.set()
            return
        for item, result in zip(batch, results, strict=True):
            item.result = result
            item.done.set()

    def _reopen(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(ReconcilerError):
                store.close()
