"""Opening a state: :func:`open_store` picks the backend a URL names. The only module that
knows both backends; the port (:mod:`.base`) knows neither."""

from __future__ import annotations

import re
from pathlib import Path

from reconciler.errors import UsageError
from reconciler.stores.base import DEFAULT_LOCK_TIMEOUT, DEFAULT_LOG_CAP, StateStore, redact


def open_store(
    url: str | Path,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    log_cap: int = DEFAULT_LOG_CAP,
    readonly: bool = False,
) -> StateStore:
    """Open (creating or upgrading) the state at ``url``.

    ``url`` is ``sqlite:///abs/path`` (``sqlite:`` + a path, as in ``file:`` URLs),
    ``sqlite:relative/path``, a bare path, or ``postgresql://...`` / ``postgres://...``.
    The default location is the caller's choice. ``lock_timeout`` bounds how long a writer
    waits for another writer before giving up with StateConflict; ``log_cap`` is the maximum
    size of one run's log in bytes. ``readonly`` is for callers that only read: the state
    must exist at the latest schema, nothing is created or upgraded, every write fails with
    StateUnavailable, and a SQLite state in a directory nobody may write can be read.
    """
    text = str(url)
    scheme = text.split(":", 1)[0].lower() if re.match(r"^[a-z][a-z0-9+.-]*:", text, re.I) else ""
    if scheme in ("postgresql", "postgres"):
        from reconciler.stores.postgres import PostgresStore

        return PostgresStore(text, lock_timeout=lock_timeout, log_cap=log_cap, readonly=readonly)
    if scheme == "sqlite":
        path = text[len("sqlite:") :]
        if path.startswith("//"):
            path = path[2:]  # sqlite:///abs -> /abs ; sqlite://rel is not a URL we accept
            if not path.startswith("/"):
                raise UsageError(
                    f"state URL {redact(text)!r}: write sqlite:///absolute/path or "
                    "sqlite:relative/path"
                )
        if not path:
            raise UsageError("state URL 'sqlite:' names no file")
        text = path
    elif scheme and len(scheme) > 1:
        raise UsageError(
            f"state URL {redact(text)!r}: unknown scheme {scheme!r}; use a path, "
            "sqlite:///path or postgresql://..."
        )
    from reconciler.stores.sqlite import SqliteStore

    return SqliteStore(Path(text), lock_timeout=lock_timeout, log_cap=log_cap, readonly=readonly)
