"""The state store: a typed port (:mod:`.base`) with a SQLite and a PostgreSQL backend.

Import the port and the records from here; backends are picked by :func:`open_store`.
"""

from reconciler.stores.base import (
    SENSITIVE_PLACEHOLDER,
    SKIP_REASONS,
    ApiKey,
    Approval,
    DriftRecord,
    HistoryEntry,
    HostResult,
    Lease,
    LogSlice,
    NewRun,
    ObjectRecord,
    ObjectWrite,
    RunId,
    RunRecord,
    SlotEntry,
    StateInfo,
    StateStore,
    hash_secret,
    open_store,
    redact,
    utcnow,
)

__all__ = [
    "SENSITIVE_PLACEHOLDER",
    "SKIP_REASONS",
    "ApiKey",
    "Approval",
    "DriftRecord",
    "HistoryEntry",
    "HostResult",
    "Lease",
    "LogSlice",
    "NewRun",
    "ObjectRecord",
    "ObjectWrite",
    "RunId",
    "RunRecord",
    "SlotEntry",
    "StateInfo",
    "StateStore",
    "hash_secret",
    "open_store",
    "redact",
    "utcnow",
]
