"""Loading the desired state of a repository: picks the source, the revision and the cache.

Called by the CLI (validate, plan, apply) and the daemon. A local directory that is not a Git
repository is read as it is; a Git repository is read at a revision (``--rev``) or, for
``validate``, from its working tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from reconciler.errors import SourceError
from reconciler.loading.loader import Loader, LoadResult
from reconciler.model.snapshot import Snapshot

Default = Literal["worktree", "head"]


@dataclass
class Source:
    """What a REPO argument resolved to."""

    snapshot: Snapshot
    description: str  # "working tree of X" / "commit abc123 of X"


def open_snapshot(repo: str, rev: str | None, default: Default) -> Source:
    """The snapshot ``repo`` + ``rev`` stands for; raises :class:`SourceError`."""
    from reconciler.sources import git

    cache = shared_loader().cache
    if git.is_url(repo):
        src = git.GitSource(repo, listing_cache=cache)
        snap = src.snapshot(rev or src.default_revision())
        return Source(snap, f"commit {snap.revision[:12]} of {src.display}")
    if not os.path.exists(repo):
        raise SourceError(f"{repo} does not exist")
    if rev is None and default == "worktree":
        from reconciler.sources.directory import DirectorySnapshot

        return Source(DirectorySnapshot(repo), f"working tree of {repo}")
    try:
        src = git.GitSource(repo, listing_cache=cache)
    except SourceError:
        if rev is not None:
            raise SourceError(f"{repo} is not a Git repository, so --rev cannot be used") from None
        from reconciler.sources.directory import DirectorySnapshot

        return Source(DirectorySnapshot(repo), f"directory {repo}")
    snap = src.snapshot(rev or src.default_revision())
    return Source(snap, f"commit {snap.revision[:12]} of {repo}")


_loader: Loader | None = None


def shared_loader() -> Loader:
    """One loader per process, backed by the on-disk parse cache."""
    global _loader
    if _loader is None:
        from reconciler.sources.cache import SqliteParseCache
        from reconciler.sources.git import default_cache_dir

        _loader = Loader(SqliteParseCache(default_cache_dir()))
    return _loader


def load_repo(
    repo: str, rev: str | None, default: Default, now: datetime | None = None
) -> tuple[Source, LoadResult]:
    source = open_snapshot(repo, rev, default)
    result = shared_loader().load(source.snapshot, now or datetime.now(UTC))
    return source, result
