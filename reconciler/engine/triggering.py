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

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
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
from reconciler.errors import ReconcilerError, StateConflict, StateUnavailable, UsageError
from reconciler.model.common import Targets
from reconciler.model.documents import JobTemplate
from reconciler.planning.plan import ResolvedInventory
from reconciler.stores.base import (
    ApiKey,
    ChecksFailed,
    IdempotencyKey,
    IdempotentRun,
    NewRun,
    RunCheck,
    RunRecord,
    StateStore,
)

log = logging.getLogger("reconciler.api")

Writer = Callable[[NewRun, IdempotencyKey | None, datetime, RunCheck | None], IdempotentRun]
"""Writes one run (with its idempotency key, or none) if its check still holds (raising
:class:`~reconciler.stores.base.ChecksFailed` if not): :class:`GroupCommit.write`, or a store's
own ``create_runs`` (:func:`direct_writer`)."""


def direct_writer(store: StateStore) -> Writer:
    """Each run in its own transaction, on ``store``."""

    def write(
        run: NewRun, key: IdempotencyKey | None, now: datetime, check: RunCheck | None
    ) -> IdempotentRun:
        return store.create_runs([(run, key)], now, None if check is None else [check])[0]

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


class KeyRevoked(ReconcilerError):
    """The key was revoked before the run could be written (HTTP 401)."""


ATTEMPTS = 3
"""How often a trigger is checked again when the applied state moved under it."""


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
    :class:`TemplateNotFound`, :class:`IdempotencyConflict`, :class:`KeyRevoked` or
    UsageError (every problem of the values and targets in one message). ``write`` writes the
    run (default: on ``store``, in a transaction of its own); ``cache`` keeps what was read of
    the applied state between calls (:class:`AppliedCache`).

    The request is checked against the kept view of the applied state, and the key may come
    from a :class:`~reconciler.engine.keys.KeyCache`: the write verifies both in its own
    transaction (:class:`~reconciler.stores.base.RunCheck`), so a run is written only if the
    state in force at its commit would accept it and the key was active then. When the state
    moved, the request is checked again against the new one (at most :data:`ATTEMPTS`)."""
    if "trigger" not in key.scopes:
        raise TriggerForbidden(f"API key {key.name} has no trigger scope")
    idem = request.idempotency_key
    if not _idempotency_key_ok(request):
        raise UsageError(
            f"Idempotency-Key: use 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )
    cache = cache or AppliedCache()
    writer = write or direct_writer(store)
    for attempt in range(ATTEMPTS):
        # the first attempt checks against the kept view without reading the state: the
        # write below verifies the serial it was checked against in its own transaction
        view = cache.view(store, fresh=attempt > 0)
        try:
            template = view.template(store, request.template)
            if template is None:
                name = json.dumps(request.template)
                raise TemplateNotFound(f"no template {name} in the applied state")
            new, idem_key = checked_run(key, request, view, template)
        except (TemplateNotFound, TriggerForbidden, UsageError):
            if attempt == 0 and cache.moved(store, view):
                continue  # refused by an older state: check against the one in force
            raise
        try:
            done = writer(new, idem_key, now, RunCheck(view.serial, key.key_hash))
        except ChecksFailed as e:
            if "revoked" in e.failed.values():
                raise KeyRevoked(f"API key {key.name} was revoked") from None
            continue  # the applied state moved since the check: check again
        if done.outcome == "conflict":
            raise IdempotencyConflict(
                f"Idempotency-Key {json.dumps(idem)} was used for another request "
                f"(it created run {done.run.id}); use a new key for a new request"
            )
        return Triggered(done.run, replayed=done.outcome == "replayed")
    raise StateConflict("the applied state changed during the request several times; retry")


async def trigger_kept(
    key: ApiKey,
    request: TriggerRequest,
    now: datetime,
    writer: GroupCommit,
    cache: AppliedCache,
) -> Triggered | None:
    """:func:`trigger` from what is kept, for a coroutine that must not wait on the state:
    the request is checked against the kept view of the applied state (no read of it) and
    the run written by ``writer``, which checks that view's serial and the key in its
    transaction. None when that cannot answer: nothing kept for the template, a refusal
    (which the state in force might not make), or a failed check; then call :func:`trigger`,
    which reads the state, in a thread. The template must have been triggered before."""
    kept = cache.kept(request.template)
    if kept is None or not _idempotency_key_ok(request):
        return None
    view, template = kept
    try:
        new, idem_key = checked_run(key, request, view, template)
    except (UsageError, TriggerForbidden):
        return None
    try:
        done = await writer.write_async(new, idem_key, now, RunCheck(view.serial, key.key_hash))
    except ChecksFailed:
        return None
    if done.outcome == "conflict":
        return None  # trigger says so, in words
    return Triggered(done.run, replayed=done.outcome == "replayed")


def _idempotency_key_ok(request: TriggerRequest) -> bool:
    idem = request.idempotency_key
    return idem is None or (
        bool(idem) and len(idem) <= MAX_IDEMPOTENCY_KEY and idem.isascii() and idem.isprintable()
    )


def checked_run(
    key: ApiKey, request: TriggerRequest, view: AppliedView, template: JobTemplate
) -> tuple[NewRun, IdempotencyKey | None]:
    """The run ``request`` asks for of ``template``, checked against ``view``, with its
    idempotency key. Reads nothing of the state: the view has what the checks need."""
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
        None,  # not read: the template and the applied state are the view's
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
    idem = request.idempotency_key
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
    return new, idem_key


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

    def view(self, store: StateStore, fresh: bool = True) -> AppliedView:
        """The view of the state in force (``fresh``: its serial read now), or, not
        ``fresh``, the one kept if there is one: a caller that takes a kept view must check
        its serial again where it writes (:class:`~reconciler.stores.base.RunCheck`)."""
        view = self._view
        if not fresh and view is not None:
            return view
        info = store.info()
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

    def kept(self, name: str) -> tuple[AppliedView, JobTemplate] | None:
        """The kept view and its template ``name``, read before (None: not kept); no read of
        the state: check its serial where the run is written."""
        view = self._view
        template = None if view is None else view.templates.get(name)
        return None if view is None or template is None else (view, template)

    def moved(self, store: StateStore, view: AppliedView) -> bool:
        """Whether the state in force is newer than ``view`` (one read of its serial)."""
        return store.info().serial != view.serial


@dataclass
class _Pending:
    run: NewRun
    key: IdempotencyKey | None
    now: datetime
    check: RunCheck | None = None
    future: Future[IdempotentRun] = field(default_factory=Future)


class GroupCommit:
    """One writer thread that writes the runs of concurrent triggers together: a request
    thread hands its run over (:meth:`write`) and waits; the writer takes everything waiting
    (at most ``max_batch``) into one transaction (:meth:`StateStore.create_runs`), so N
    triggers that arrive together cost one commit, not N. A lone trigger waits for no one.
    If a batch fails, its runs are written one by one, so one bad run fails only itself; the
    runs whose :class:`~reconciler.stores.base.RunCheck` failed get that failure, the others
    are written together.
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

    def write(
        self,
        run: NewRun,
        key: IdempotencyKey | None,
        now: datetime,
        check: RunCheck | None = None,
    ) -> IdempotentRun:
        """Write one run and wait for the answer (a :data:`Writer`)."""
        try:
            return self.submit(run, key, now, check).result(self._timeout)
        except FutureTimeout:
            raise StateUnavailable("the state did not take the run in time; retry") from None

    async def write_async(
        self,
        run: NewRun,
        key: IdempotencyKey | None,
        now: datetime,
        check: RunCheck | None = None,
    ) -> IdempotentRun:
        """:meth:`write` for a coroutine: the event loop goes on while the writer writes."""
        future = asyncio.wrap_future(self.submit(run, key, now, check))
        try:
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise StateUnavailable("the state did not take the run in time; retry") from None

    def submit(
        self,
        run: NewRun,
        key: IdempotencyKey | None,
        now: datetime,
        check: RunCheck | None = None,
    ) -> Future[IdempotentRun]:
        """Hand one run to the writer; the future answers as :meth:`write` does. A future
        cancelled before the writer took it is not written."""
        item = _Pending(run, key, now, check)
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
        return item.future

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
            # a future cancelled before now is dropped; a running one can no longer be
            batch = [i for i in batch if i.future.set_running_or_notify_cancel()]
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            store = self._store = self._store or self._open()
            checks = [i.check for i in batch]
            results = store.create_runs(
                [(i.run, i.key) for i in batch],
                max(i.now for i in batch),
                checks if any(c is not None for c in checks) else None,
            )
        except ChecksFailed as e:  # those fail; the others are written without them
            for index, why in e.failed.items():
                batch[index].future.set_exception(ChecksFailed({0: why}))
            rest = [item for n, item in enumerate(batch) if n not in e.failed]
            if rest:
                self._commit(rest)
            return
        except Exception as e:
            if self._store is not None and isinstance(e, StateUnavailable):
                self._reopen()
            if len(batch) > 1:
                for item in batch:
                    self._commit([item])
                return
            log.debug("a triggered run could not be written: %s", e)
            batch[0].future.set_exception(e)
            return
        for item, result in zip(batch, results, strict=True):
            item.future.set_result(result)

    def _reopen(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(ReconcilerError):
                store.close()
