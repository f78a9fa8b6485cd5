"""Reconciling: the tracked branch's head -> load -> plan -> apply, with stalled vs retrying.

Who calls it: the daemon's reconcile thread (:class:`ReconcileLoop`) and tests. One pass
(:func:`reconcile_once`) resolves the current head itself, whatever asked for the pass (the
watcher, the poll timer, a forge webhook), so a burst of requests is one pass and a newer
commit always wins over a retry.

Outcomes of a pass (:class:`PassResult.outcome`):

``applied``
    the head was valid and its plan was applied (``sync: auto``);
``unchanged``
    the head is the revision already applied (or already found invalid): nothing to do;
``pending``
    ``sync: manual``: the head is valid but waits for ``reconciler apply``;
``stalled``
    the head failed validation: the last good state stays in force, the diagnostics are kept
    as the last attempt (``status``, the API), and nothing is retried until a new commit;
raises a transient :class:`~reconciler.errors.ReconcilerError` (fetch or database failure):
    the loop retries with capped back-off.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from reconciler.clock import Clock
from reconciler.errors import ReconcilerError, SourceError, StateConflict
from reconciler.model.diagnostics import Diagnostic
from reconciler.stores.base import ReconcileAttempt, StateStore, SystemJob

log = logging.getLogger("reconciler.reconcile")

Outcome = Literal["applied", "unchanged", "pending", "stalled"]

#: The window of fire times a daemon's plan looks at (what the plan's slot diff covers).
HORIZON = timedelta(days=7)


@dataclass(frozen=True)
class PassResult:
    outcome: Outcome
    revision: str | None
    message: str
    changed: bool = False
    """Something was written to the applied objects (the firing loop must re-read them)."""
    diagnostics: tuple[Diagnostic, ...] = field(default=())


def reconcile_once(store: StateStore, repo: str, clock: Clock) -> PassResult:
    """One pass over ``repo`` (a path or a Git URL); see the module docstring."""
    from reconciler.engine.planning import (
        apply_plan,
        desired_for,
        load_tracked_source,
        plan_against_state,
    )
    from reconciler.model.diagnostics import Severity

    now = clock.now()
    source, result = load_tracked_source(repo, None, now)
    where = source.description
    revision = result.revision
    info = store.info()
    if (
        source.git is not None
        and revision is not None
        and info.revision is not None
        and source.git.is_ancestor(revision, info.revision)
    ):
        # The tracked branch moved back (a force-push, a reset): never apply an older commit
        # on our own; a new commit, or reconciler apply by hand, moves on.
        message = (
            f"the tracked branch was rewound from {info.revision[:12]} to {revision[:12]} "
            f"(a force-push or reset of {source.git.display}); keeping {info.revision[:12]} in "
            "force: push a new commit, or apply the older one with reconciler apply"
        )
        last = store.last_attempt()
        if last is None or last.revision != revision or last.ok:
            store.record_attempt(ReconcileAttempt(revision, now, False, (), message))
        return PassResult("stalled", revision, message)
    last = store.last_attempt()
    if (
        revision is not None
        and last is not None
        and last.revision == revision
        and (not last.ok or info.revision == revision)
    ):
        if not last.ok:
            return PassResult("stalled", revision, f"{where} is still the invalid commit")
        return PassResult("unchanged", revision, f"{where} is applied")
    errors = tuple(d for d in result.diagnostics if d.severity is Severity.ERROR)
    desired, disabled = desired_for(result, store)
    if desired is None:
        store.record_attempt(
            ReconcileAttempt(
                revision,
                now,
                False,
                tuple(d.to_json() for d in result.diagnostics),
                f"{len(errors)} error(s) in {where}; the state in force is unchanged",
            )
        )
        return PassResult(
            "stalled",
            revision,
            f"{where} fails validation with {len(errors)} error(s); keeping revision "
            f"{(info.revision or 'none')[:12]} in force",
            diagnostics=errors,
        )
    plan = plan_against_state(desired, store, now, HORIZON, disabled)
    sync = desired.settings.sync
    if sync == "manual":
        store.record_attempt(ReconcileAttempt(revision, now, True, (), "sync: manual"))
        if plan.empty:
            return PassResult("unchanged", revision, f"{where}: nothing to apply")
        return PassResult(
            "pending", revision, f"{where} has changes; sync is manual: run reconciler apply"
        )
    changed = False
    if not plan.empty or info.revision != revision:
        try:
            apply_plan(store, plan, now, repo, source.git)
            changed = True
        except StateConflict:
            # another replica applied first; the next pass sees its result
            return PassResult("unchanged", revision, f"{where} was applied by another replica")
    note = None
    if disabled:
        note = (
            f"applied although {len(disabled)} unchanged schedule(s) lost their owner's access: "
            + "; ".join(f"{n}: {why}" for n, why in sorted(disabled.items()))
        )
    store.record_attempt(
        ReconcileAttempt(revision, now, True, tuple(d.to_json() for d in errors), note)
    )
    s = plan.summary
    return PassResult(
        "applied",
        revision,
        f"applied {where}: {s['create']} created, {s['update']} updated, "
        f"{s['delete']} deleted, {s['blocked']} blocked"
        + (f"; {len(disabled)} schedule(s) disabled (their owner lost access)" if disabled else ""),
        changed,
        diagnostics=errors,
    )


class ReconcileLoop:
    """The reconcile thread: a pass whenever one is requested, retries with back-off.

    :meth:`request` only sets a flag and wakes the thread, so any number of requests while a
    pass runs make one more pass. ``on_change`` is called after a pass that wrote to the
    applied objects (the daemon pokes the firing loop)."""

    def __init__(
        self,
        store: StateStore,
        repo: str,
        clock: Clock,
        on_change: Callable[[], None] = lambda: None,
        on_result: Callable[[PassResult], None] = lambda r: None,
        *,
        backoff_first: float = 1.0,
        backoff_max: float = 300.0,
        poll_seconds: float = 60.0,
    ) -> None:
        self.poll_seconds = poll_seconds
        self.store = store
        self.repo = repo
        self.clock = clock
        self.on_change = on_change
        self.on_result = on_result
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self._requested = threading.Event()
        self.stopping = threading.Event()
        self.passes = 0
        self.last: PassResult | None = None
        self.last_error: str | None = None

    def _record_pass(self, result: PassResult) -> None:
        try:
            self.store.record_system(
                SystemJob(
                    "reconcile",
                    self.poll_seconds,
                    self.clock.now(),
                    f"{result.outcome}: {result.message}"[:500],
                )
            )
        except ReconcilerError as e:
            log.warning("cannot record the reconcile pass: %s", e)

    def request(self) -> None:
        self._requested.set()

    def stop(self) -> None:
        self.stopping.set()
        self._requested.set()

    def run_forever(self) -> None:
        delay = self.backoff_first
        while not self.stopping.is_set():
            self._requested.wait()
            if self.stopping.is_set():
                return
            self._requested.clear()
            try:
                result = reconcile_once(self.store, self.repo, self.clock)
            except ReconcilerError as e:
                message = str(e)
                if not e.transient and isinstance(e, SourceError):
                    # The tracked branch is gone or unreadable: stall like an invalid commit.
                    result = PassResult("stalled", None, f"cannot read the desired state: {e}")
                    try:
                        self.store.record_attempt(
                            ReconcileAttempt(None, self.clock.now(), False, (), message)
                        )
                    except ReconcilerError as store_error:
                        log.warning("cannot record the reconcile attempt: %s", store_error)
                    if self.last_error != message:
                        self.on_result(result)
                    self.last_error = message
                    self.last = result
                    continue
                if self.last_error != message:
                    log.warning(
                        "reconcile failed: %s; retrying in %.0f s (at once on a new commit)",
                        e,
                        delay,
                    )
                self.last_error = message
                # A new request (a new commit, a webhook) preempts the back-off.
                if not self._requested.wait(delay):
                    self._requested.set()
                delay = min(delay * 2, self.backoff_max)
                continue
            self.passes += 1
            delay = self.backoff_first
            self._record_pass(result)
            self.last_error = None
            previous, self.last = self.last, result
            if previous is None or (previous.outcome, previous.revision) != (
                result.outcome,
                result.revision,
            ):
                self.on_result(result)
            if result.changed:
                self.on_change()
