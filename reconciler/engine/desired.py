"""Loading the desired state of a repository: picks the source, the revision and the cache.

Called by the CLI (validate, plan, apply) and the daemon. A local directory that is not a Git
repository is read as it is; a Git repository is read at a revision (``--rev``) or, for
``validate``, from its working tree (without the repositories inside it, which a revision does
not hold either), or at HEAD when it is bare.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from reconciler.engine.collector import gc_paused
from reconciler.errors import SourceError
from reconciler.loading.loader import Loader, LoadResult
from reconciler.model.snapshot import Snapshot

if TYPE_CHECKING:
    from reconciler.sources.git import GitSource

Default = Literal["worktree", "head"]


@dataclass
class OpenedSnapshot:
    """What a REPO argument resolved to."""

    snapshot: Snapshot
    description: str  # "working tree of X" / "commit abc123 of X"
    git: GitSource | None = None  # the opened repository, to read other revisions of it

    def at(self, rev: str) -> OpenedSnapshot:
        """The same repository at another revision, without opening (or fetching) it again."""
        assert self.git is not None
        snap = self.git.snapshot(rev)
        return OpenedSnapshot(snap, f"commit {snap.revision[:12]} of {self.git.display}", self.git)


def open_snapshot(repo: str, rev: str | None, default: Default) -> OpenedSnapshot:
    """The snapshot ``repo`` + ``rev`` stands for; raises :class:`SourceError`."""
    from reconciler.sources import git

    cache = shared_loader().cache
    if git.is_url(repo):
        src = git.GitSource(repo, listing_cache=cache)
        snap = src.snapshot(rev or src.default_revision())
        return OpenedSnapshot(snap, f"commit {snap.revision[:12]} of {src.display}", src)
    if not os.path.exists(repo):
        raise SourceError(f"{repo} does not exist")
    if rev is None and default == "worktree":
        from reconciler.sources.directory import DirectorySnapshot

        kind = git.repository_kind(repo)
        if kind != "bare":
            # in a Git work tree, repositories inside it (submodules) are skipped, as a
            # revision skips them; a plain directory is read as it is
            snapshot = DirectorySnapshot(repo, skip_repositories=kind == "worktree")
            return OpenedSnapshot(snapshot, f"working tree of {repo}")
        src = git.GitSource(repo, listing_cache=cache)
        snap = src.snapshot("HEAD")
        how = "HEAD, as a bare repository has no working tree"
        return OpenedSnapshot(snap, f"commit {snap.revision[:12]} of {repo}: {how}", src)
    try:
        src = git.GitSource(repo, listing_cache=cache)
    except SourceError:
        if rev is not None:
            raise SourceError(f"{repo} is not a Git repository, so --rev cannot be used") from None
        from reconciler.sources.directory import DirectorySnapshot

        return OpenedSnapshot(DirectorySnapshot(repo), f"directory {repo}")
    snap = src.snapshot(rev or src.default_revision())
    return OpenedSnapshot(snap, f"commit {snap.revision[:12]} of {repo}", src)


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
) -> tuple[OpenedSnapshot, LoadResult]:
    source = open_snapshot(repo, rev, default)
    return source, load_source(source, now)


def load_source(source: OpenedSnapshot, now: datetime | None = None) -> LoadResult:
    """Load the snapshot of an opened source (with the shared, cached loader)."""
    with gc_paused():
        return shared_loader().load(source.snapshot, now or datetime.now(UTC))
