"""Snapshots of Git revisions, read straight from the object database. I/O.

The only module that imports pygit2. A revision is read without a checkout: the tree is
listed (path, blob SHA, mode) and blobs are read on demand. Remote URLs are cloned once into a
cache directory and fetched on each use.

Credentials are used, never kept: the clone cache is keyed by the URL without them, its
``origin`` holds that URL only, and a remote that asks for a user and password gets them from
where the user gave them (:class:`_Credentials`). They never appear in messages either.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Literal, Protocol

import pygit2
from pygit2.enums import CredentialType

from reconciler.errors import RevisionNotFound, SourceError, SourceUnavailable
from reconciler.model.snapshot import Entry, EntryType

_LINK_MODE = 0o120000
_TREE_MODE = 0o040000
_COMMIT_MODE = 0o160000  # submodule
_EXEC_MODE = 0o100755
_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://|^[^/@\s]+@[^:/\s]+:")
_USERINFO_RE = re.compile(r"^([a-z][a-z0-9+.-]*://)([^/@\s]*)@", re.IGNORECASE)
_REDACTED = "***"
#: Where a run (or any command) finds the user and password of a private HTTP remote.
USERNAME_ENV = "RECONCILER_GIT_USERNAME"
PASSWORD_ENV = "RECONCILER_GIT_PASSWORD"


def is_url(repo: str) -> bool:
    return bool(_URL_RE.match(repo))


def redact(url: str) -> str:
    """``https://user:token@host/x`` -> ``https://***@host/x``."""
    return re.sub(r"(?<=://)[^/@\s]+@", "***@", url)


def without_credentials(url: str) -> str:
    """``https://user:token@host/x`` (or its redacted form) -> ``https://host/x``."""
    return _USERINFO_RE.sub(r"\1", url, count=1)


def url_credentials(url: str) -> tuple[str | None, str | None]:
    """The user and password written into a URL (``(None, None)`` when there are none)."""
    from urllib.parse import unquote

    m = _USERINFO_RE.match(url)
    if m is None or m.group(2) in ("", _REDACTED):
        return None, None
    user, sep, password = m.group(2).partition(":")
    return unquote(user) or None, unquote(password) if sep else None


class _NoCredentials(Exception):
    """Raised from the credentials callback when every source was offered (or none exists)."""


class _Credentials(pygit2.RemoteCallbacks):
    """Answers a remote's request for a user and password, trying each source once, in order:

    1. the URL as the user wrote it (``https://user:token@host/repo.git`` on the command line);
    2. ``$RECONCILER_GIT_USERNAME`` / ``$RECONCILER_GIT_PASSWORD``;
    3. Git's credential helpers (``git credential fill``, with terminal prompts off).

    Nothing is written back: no helper is told to store (or forget) what worked.
    """

    def __init__(self, location: str) -> None:
        super().__init__()
        self.location = location
        self.offered: list[str] = []
        self.wants_key = False
        self._offers: Iterator[tuple[str, str, str]] = self._sources()

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> pygit2.UserPass:
        if not allowed_types & CredentialType.USERPASS_PLAINTEXT:
            self.wants_key = True  # an SSH key: not something reconciler can give
            raise _NoCredentials
        for where, user, password in self._offers:
            self.offered.append(where)
            return pygit2.UserPass(user, password)
        raise _NoCredentials

    def _sources(self) -> Iterator[tuple[str, str, str]]:
        user, password = url_credentials(self.location)
        if password is not None:
            yield "the URL", user or "", password
        env_password = os.environ.get(PASSWORD_ENV)
        if env_password:
            env_user = os.environ.get(USERNAME_ENV) or user or "git"
            yield f"${PASSWORD_ENV}", env_user, env_password
        helped = credential_fill(without_credentials(self.location), user)
        if helped is not None:
            yield "a Git credential helper", *helped

    def failure(self, display: str) -> str:
        """Why a fetch that needed credentials failed, and where to give them (one line)."""
        how = (
            f"give them in ${USERNAME_ENV} and ${PASSWORD_ENV}, through a Git credential "
            "helper (git config credential.helper), or in the URL"
        )
        if self.wants_key:
            return (
                f"cannot fetch {display}: the remote asks for an SSH key, which reconciler "
                "cannot give; use its https:// URL with a user and password or token"
            )
        if not self.offered:
            return (
                f"cannot fetch {display}: the remote asks for credentials and none were "
                f"given; {how}"
            )
        return (
            f"cannot fetch {display}: the remote refused the credentials from "
            f"{' and '.join(self.offered)}; {how}"
        )


def credential_fill(url: str, user: str | None) -> tuple[str, str] | None:
    """What Git's credential helpers answer for ``url``, or None (no helper, no answer)."""
    request = f"url={url}\n" + (f"username={user}\n" if user else "") + "\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["GIT_TERMINAL_PROMPT"] = "0"  # a helper may answer; nobody is asked at a terminal
    try:
        done = subprocess.run(
            ["git", "credential", "fill"],
            input=request,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    answer = dict(line.partition("=")[::2] for line in done.stdout.splitlines() if "=" in line)
    if not answer.get("password"):
        return None
    return answer.get("username") or user or "git", answer["password"]


class ListingCache(Protocol):
    """Where tree listings are kept between runs (the parse cache implements it)."""

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]: ...

    def put_many(self, items: Mapping[str, bytes]) -> None: ...


class GitSnapshot:
    """The files of one commit."""

    def __init__(
        self,
        repo: pygit2.Repository,
        commit: pygit2.Commit,
        cache: ListingCache | None = None,
        subdir: str = "",
    ) -> None:
        self._repo = repo
        self._commit = commit
        self._cache = cache
        self._entries: dict[str, Entry] | None = None
        self._executables: set[str] = set()
        self._tree = commit.tree
        if subdir:
            try:
                sub = commit.tree[subdir]
            except KeyError:
                raise SourceError(f"{subdir}/ does not exist at {str(commit.id)[:12]}") from None
            tree = repo[sub.id]
            if not isinstance(tree, pygit2.Tree):
                raise SourceError(f"{subdir} is not a directory at {str(commit.id)[:12]}")
            self._tree = tree

    @property
    def revision(self) -> str:
        return str(self._commit.id)

    @property
    def tree_id(self) -> str:
        return str(self._tree.id)

    @property
    def commit(self) -> pygit2.Commit:
        return self._commit

    @property
    def entries(self) -> Mapping[str, Entry]:
        if self._entries is None:
            key = f"tree2:{self._tree.id}"
            cached = self._cache.get_many([key]).get(key) if self._cache else None
            if cached is not None:
                rows = marshal.loads(cached)
                self._entries = {p: Entry(p, b, EntryType(t), tg) for p, b, t, tg, _ in rows}
                self._executables = {p for p, _, _, _, x in rows if x}
            else:
                out: dict[str, Entry] = {}
                self._walk(self._tree, "", out)
                self._entries = out
                if self._cache is not None:
                    rows = [
                        (e.path, e.blob_id, str(e.type), e.link_target, e.path in self._executables)
                        for e in out.values()
                    ]
                    self._cache.put_many({key: marshal.dumps(rows)})
        return self._entries

    def _walk(self, tree: pygit2.Tree, prefix: str, out: dict[str, Entry]) -> None:
        for e in tree:
            path = prefix + (e.name or "")
            mode = e.filemode
            if mode == _TREE_MODE:
                sub = self._repo[e.id]
                assert isinstance(sub, pygit2.Tree)
                self._walk(sub, path + "/", out)
            elif mode == _LINK_MODE:
                target = self._blob(str(e.id)).decode("utf-8", "replace")
                out[path] = Entry(path, str(e.id), EntryType.SYMLINK, target)
            elif mode == _COMMIT_MODE:
                continue
            else:
                out[path] = Entry(path, str(e.id))
                if mode == _EXEC_MODE:
                    self._executables.add(path)

    def read(self, path: str) -> bytes:
        entry = self.entries.get(path)
        if entry is None:
            raise SourceError(f"{path} does not exist at {self.revision[:12]}")
        return self._blob(entry.blob_id)

    def is_executable(self, path: str) -> bool:
        return path in self._executables

    def _blob(self, oid: str) -> bytes:
        blob = self._repo[pygit2.Oid(hex=oid)]  # a full id: no prefix search
        assert isinstance(blob, pygit2.Blob)
        return bytes(blob.data)


class GitSource:
    """A repository on disk (a path) or behind a URL (cloned into ``cache_dir``)."""

    def __init__(
        self,
        location: str,
        cache_dir: str | os.PathLike[str] | None = None,
        listing_cache: ListingCache | None = None,
    ) -> None:
        self.location = location
        self.listing_cache = listing_cache
        self.subdir = ""
        self.display = redact(location)
        if is_url(location):
            base = Path(cache_dir or default_cache_dir()) / "repos"
            # one clone per repository, whatever credentials the URL carries (or had redacted)
            self.remote_url = without_credentials(location)
            self._path = base / _cache_key(self.remote_url)
            if self.remote_url != location:
                # older versions cloned under the URL as given, credentials and all
                shutil.rmtree(base / _cache_key(location), ignore_errors=True)
            self.repo = self._clone_or_fetch(base)
        else:
            found = pygit2.discover_repository(location)
            if found is None:
                raise SourceError(f"{location} is not a Git repository")
            self.repo = pygit2.Repository(found)
            # REPO may be a folder inside a work tree (a monorepo): read that subtree only.
            workdir = self.repo.workdir
            if workdir:
                rel = os.path.relpath(os.path.realpath(location), os.path.realpath(workdir))
                if rel != "." and not rel.startswith(".."):
                    self.subdir = rel.replace(os.sep, "/")

    def _clone_or_fetch(self, base: Path) -> pygit2.Repository:
        callbacks = _Credentials(self.location)
        try:
            if (self._path / "HEAD").exists():
                repo = pygit2.Repository(str(self._path))
                if repo.remotes["origin"].url != self.remote_url:
                    repo.remotes.set_url("origin", self.remote_url)  # never a URL with a password
                repo.remotes["origin"].fetch(["+refs/heads/*:refs/heads/*"], callbacks=callbacks)
                return repo
            base.mkdir(parents=True, exist_ok=True)
            return pygit2.clone_repository(
                self.remote_url, str(self._path), bare=True, callbacks=callbacks
            )
        except _NoCredentials:
            raise SourceError(callbacks.failure(self.display)) from None
        except (pygit2.GitError, KeyError, OSError) as e:
            message = redact(str(e)).replace(self.location, self.display)
            raise SourceUnavailable(f"cannot fetch {self.display}: {message}") from None

    @property
    def is_bare(self) -> bool:
        return bool(self.repo.is_bare)

    @property
    def git_dir(self) -> str:
        """The repository's Git directory (what the daemon's watcher watches)."""
        return str(self.repo.path)

    @property
    def workdir(self) -> str | None:
        wd: str | None = self.repo.workdir
        return wd

    def is_ancestor(self, older: str, newer: str) -> bool:
        """Whether commit ``older`` is a strict ancestor of commit ``newer``."""
        try:
            return older != newer and bool(self.repo.descendant_of(newer, older))
        except (KeyError, ValueError, pygit2.GitError):
            return False

    def resolve(self, rev: str) -> str:
        """The full commit SHA a revision name stands for."""
        if self.repo.is_empty:
            raise SourceUnavailable(f"{self.display} has no commits yet")
        try:
            obj = self.repo.revparse_single(rev)
            commit = obj.peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            raise RevisionNotFound(f'revision "{rev}" does not exist in {self.display}') from None
        return str(commit.id)

    def snapshot(self, rev: str) -> GitSnapshot:
        sha = self.resolve(rev)
        commit = self.repo[sha]
        assert isinstance(commit, pygit2.Commit)
        return GitSnapshot(self.repo, commit, self.listing_cache, self.subdir)

    def change_authors(
        self,
        old: str | None,
        new: str,
        paths: Mapping[str, Iterable[str]],
        limit: int = 200,
    ) -> dict[str, tuple[str, ...]]:
        """The author e-mails of the commits after ``old`` up to ``new`` that touched each
        key's paths (relative to the repository folder read, as snapshots name them).

        At most ``limit`` commits are read (newest first; when there were more, the author
        of ``new`` is added to every key); merge commits author nothing of their own, the
        commits they bring in are read instead. A key whose paths no commit
        read touched, every key when nothing was applied before (``old`` None) and every key
        when ``old`` is not an ancestor of ``new`` (a rewritten history) get the author of
        ``new`` itself.
        """
        tip = self.repo[self.resolve(new)]
        assert isinstance(tip, pygit2.Commit)
        tip_author = (tip.author.email or "").strip()
        found: dict[str, set[str]] = {k: set() for k in paths}
        prefix = f"{self.subdir}/" if self.subdir else ""
        wanted = {k: {prefix + p for p in ps} for k, ps in paths.items()}
        try:
            linear = old is not None and old != str(tip.id) and self.is_ancestor(old, str(tip.id))
            if linear and old is not None:
                complete = self._touching(old, tip, wanted, found, limit)
                if not complete and tip_author:
                    for v in found.values():  # older commits were not read: the tip counts
                        v.add(tip_author)
        except (KeyError, ValueError, pygit2.GitError) as e:
            raise SourceError(f"cannot read the history of {self.display}: {e}") from None
        return {
            k: tuple(sorted(v or ({tip_author} if tip_author else set()))) for k, v in found.items()
        }

    def _touching(
        self,
        old: str,
        tip: pygit2.Commit,
        wanted: Mapping[str, set[str]],
        found: dict[str, set[str]],
        limit: int,
    ) -> bool:
        """Add to ``found`` the authors of the commits after ``old`` touching ``wanted``;
        False when ``limit`` commits were read before reaching ``old``."""
        walker = self.repo.walk(tip.id, pygit2.enums.SortMode.TOPOLOGICAL)
        walker.hide(pygit2.Oid(hex=old))
        for i, commit in enumerate(walker):
            if i >= limit:
                return False
            if len(commit.parents) != 1:
                continue
            diff = self.repo.diff(commit.parents[0], commit)
            changed = {d.new_file.path for d in diff.deltas} | {
                d.old_file.path for d in diff.deltas
            }
            email = (commit.author.email or "").strip()
            for key, ps in wanted.items():
                if email and not ps.isdisjoint(changed):
                    found[key].add(email)
        return True

    def default_revision(self, branch: str | None = None) -> str:
        """The head of the tracked branch (``branch``, else the remote/HEAD's branch)."""
        if branch:
            for ref in (f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"):
                if ref in self.repo.references:
                    return ref
            raise RevisionNotFound(f'branch "{branch}" does not exist in {self.display}')
        return "HEAD"


def _cache_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:24]


def repository_kind(path: str) -> Literal["bare", "worktree"] | None:
    """Whether ``path`` is in a Git work tree or is a bare repository (None: neither)."""
    try:
        found = pygit2.discover_repository(path)
        if found is None:
            return None
        return "bare" if pygit2.Repository(found).is_bare else "worktree"
    except (pygit2.GitError, OSError, ValueError):
        return None


def default_cache_dir() -> str:
    env = os.environ.get("RECONCILER_CACHE_DIR")
    if env:
        return env
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "reconciler")


def commit_paths(worktree: str, paths: list[str], message: str) -> str:
    """Commit only ``paths`` (relative to ``worktree``) of a Git working tree with the
    author and committer of the Git configuration (hooks and signing settings apply, as with
    ``git commit``); other staged changes stay staged. Returns the new commit's SHA; raises
    SourceError with Git's own words when Git refuses. Nothing is ever pushed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["GIT_TERMINAL_PROMPT"] = "0"

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", worktree, *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise SourceError(f"cannot run git: {e}") from None
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            why = lines[-1].strip() if lines else f"exit status {done.returncode}"
            raise SourceError(f"git {args[0]} failed in {worktree}: {why}")
        return done.stdout.strip()

    git("add", "--", *paths)
    git("commit", "--quiet", "--only", "-m", message, "--", *paths)
    return git("rev-parse", "HEAD")
