"""The exception tree of reconciler. Pure; imported by every layer.

User mistakes in the desired state are *not* exceptions: they are collected as
:class:`reconciler.model.diagnostics.Diagnostic` values. Exceptions are for program-level
failures, classified as permanent (retrying will not help) or transient (retry with back-off)::

    ReconcilerError                 base; ``str(e)`` is one clear line for the user
    ├── UsageError                  bad command-line input (unknown template, bad --var ...)
    ├── SourceError                 reading a repository failed
    │   ├── RevisionNotFound        unknown branch, tag or SHA
    │   └── SourceUnavailable       unreachable remote, empty repository  (transient)
    ├── StateError                  the state store
    │   ├── StateCorrupt            not a reconciler state, or damaged
    │   ├── StateTooNew             written by a newer version
    │   ├── StateConflict           a concurrent writer won; a saved plan is stale
    │   └── StateUnavailable        database down or unreachable          (transient)
    ├── PlanFileError               a saved plan that is unreadable or edited by hand
    └── ExecutionError              a run could not be started
"""

from __future__ import annotations


class ReconcilerError(Exception):
    """Base of every error the product raises on purpose; the message is shown as is."""

    transient: bool = False
    exit_code: int = 1


class UsageError(ReconcilerError):
    """The command line asked for something that does not exist or cannot be done."""


class SourceError(ReconcilerError):
    """A repository could not be read."""


class RevisionNotFound(SourceError):
    """The requested revision does not exist in the repository."""


class SourceUnavailable(SourceError):
    """The repository cannot be reached right now, or holds no commit yet."""

    transient = True


class StateError(ReconcilerError):
    """The state store failed."""


class StateCorrupt(StateError):
    """The state store is not a reconciler state, or it is damaged."""


class StateTooNew(StateError):
    """The state store was written by a newer version of reconciler."""


class StateConflict(StateError):
    """Someone else changed the state first (a concurrent apply, a stale saved plan)."""


class StateUnavailable(StateError):
    """The state store cannot be reached right now."""

    transient = True


class PlanFileError(ReconcilerError):
    """A saved plan file is unreadable or was edited by hand."""


class ExecutionError(ReconcilerError):
    """A run could not be started or supervised."""
