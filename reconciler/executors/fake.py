"""A scripted executor with the same interface as ``AnsibleExecutor``, for engine tests. Pure
(no processes, no files; threads only when ``delay`` is used).

Script a run by its ``run_id`` (or a default): the progress it reports, the log lines it
writes and the outcome it returns. ``cancel()`` ends a delayed run with status ``cancelled``.
Every request is recorded in ``requests`` so tests can assert what the engine asked for.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from reconciler.executors.spec import (
    LogCallback,
    Progress,
    ProgressCallback,
    RunOutcome,
    RunRequest,
)


@dataclass(frozen=True)
class Script:
    """What a fake run does: ``progress`` and ``log`` are replayed, then ``outcome`` returned
    (its ``run_id`` is replaced by the request's). ``delay`` seconds pass before the end."""

    outcome: RunOutcome
    progress: Sequence[Progress] = ()
    log: Sequence[str] = ()
    delay: float = 0.0
    log_every: float = 0.0
    """When set, the log lines are written one every ``log_every`` seconds within ``delay``
    (a run whose log grows while it runs), instead of all at the start."""


def succeeded(message: str = "ok") -> Script:
    return Script(RunOutcome(run_id="", status="succeeded", message=message))


@dataclass
class FakeRunHandle:
    run_id: str
    _script: Script
    _on_progress: ProgressCallback | None
    _on_log: LogCallback | None
    _log: list[str] = field(default_factory=list)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)
    _outcome: RunOutcome | None = None
    _progress: list[Progress] = field(default_factory=list)

    def _play(self) -> None:
        for item in self._script.progress:
            item = replace(item, run_id=self.run_id)
            self._progress.append(item)
            if self._on_progress is not None:
                self._on_progress(item)
        waited = 0.0
        cancelled = False
        for line in self._script.log:
            if self._script.log_every and not cancelled:
                cancelled = self._cancel.wait(self._script.log_every)
                waited += self._script.log_every
            self._log.append(line)
            if self._on_log is not None:
                self._on_log(line)
        rest = max(0.0, self._script.delay - waited)
        if not cancelled and rest:
            cancelled = self._cancel.wait(rest)
        outcome = replace(self._script.outcome, run_id=self.run_id)
        if cancelled or self._cancel.is_set():
            outcome = replace(outcome, status="cancelled", message="cancelled")
        self._outcome = outcome
        self._done.set()

    def events(self) -> Iterator[Progress]:
        self._done.wait()
        yield from self._progress

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> RunOutcome:
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.run_id} still running after {timeout} s")
        assert self._outcome is not None
        return self._outcome

    def log_text(self) -> str:
        return "".join(line if line.endswith("\n") else line + "\n" for line in self._log)


class FakeExecutor:
    """``scripts`` maps run ids to scripts; ``default`` is used for any other run."""

    def __init__(
        self, scripts: Mapping[str, Script] | None = None, default: Script | None = None
    ) -> None:
        self.scripts = dict(scripts or {})
        self.default = default or succeeded()
        self.requests: list[RunRequest] = []

    def start(
        self,
        request: RunRequest,
        on_progress: ProgressCallback | None = None,
        on_log: LogCallback | None = None,
    ) -> FakeRunHandle:
        self.requests.append(request)
        script = self.scripts.get(request.run_id, self.default)
        handle = FakeRunHandle(request.run_id, script, on_progress, on_log)
        if script.delay:
            threading.Thread(target=handle._play, daemon=True).start()
        else:
            handle._play()
        return handle
