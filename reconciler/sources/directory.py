"""Snapshots of a directory's working tree (what ``validate`` reads by default). I/O.

Files are listed as they are on disk, ``.git`` and other VCS folders skipped; each file's
Git blob SHA is computed from its contents, so unchanged files hit the parse cache just as
committed ones do. In a Git work tree, folders that are repositories of their own (submodules,
nested clones) are skipped as well: a commit holds them as a link, not as files. A file over the
loader's size limit is refused by its size, unread
(:class:`~reconciler.model.snapshot.FileTooLarge`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from reconciler.errors import SourceError
from reconciler.loading.yamlparse import MAX_FILE_BYTES
from reconciler.model.snapshot import Entry, EntryType, FileTooLarge, git_blob_id

SKIP_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "__pycache__", "node_modules", ".reconciler"}


class DirectorySnapshot:
    """The files below ``root`` as they are now."""

    def __init__(self, root: str | os.PathLike[str], skip_repositories: bool = False) -> None:
        self.root = Path(root)
        self.skip_repositories = skip_repositories
        if not self.root.is_dir():
            raise SourceError(f"{self.root} is not a directory")
        self._data: dict[str, bytes] = {}
        self._entries: dict[str, Entry] | None = None

    @property
    def revision(self) -> str | None:
        return None

    @property
    def entries(self) -> Mapping[str, Entry]:
        if self._entries is None:
            self._entries = self._scan()
        return self._entries

    def _scan(self) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        root = str(self.root)
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            keep = []
            for d in dirnames:
                if d in SKIP_DIRS:
                    continue
                full = os.path.join(dirpath, d)
                rel = f"{rel_dir}/{d}" if rel_dir else d
                if os.path.islink(full):
                    target = os.readlink(full)
                    out[rel] = Entry(
                        rel, git_blob_id(os.fsencode(target)), EntryType.SYMLINK, target
                    )
                elif not (self.skip_repositories and os.path.lexists(os.path.join(full, ".git"))):
                    keep.append(d)
            dirnames[:] = keep
            for f in filenames:
                full = os.path.join(dirpath, f)
                rel = f"{rel_dir}/{f}" if rel_dir else f
                if os.path.islink(full):
                    target = os.readlink(full)
                    out[rel] = Entry(
                        rel, git_blob_id(os.fsencode(target)), EntryType.SYMLINK, target
                    )
                    continue
                if not rel.lower().endswith((".yaml", ".yml")):
                    # only YAML is parsed; other files need to exist, not to be hashed
                    out[rel] = Entry(rel, "")
                    continue
                try:
                    data = self._read_disk(full, rel)
                except FileTooLarge as big:  # the loader reports it; its size is the key
                    out[rel] = Entry(rel, f"oversize:{big.size}")
                    continue
                self._data[rel] = data
                out[rel] = Entry(rel, git_blob_id(data))
        return out

    @staticmethod
    def _read_disk(full: str, rel: str) -> bytes:
        """The file's bytes; a file over the loader's limit is refused before it is read."""
        try:
            # O_NONBLOCK: a FIFO or device named *.yaml must not hang the read
            fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            with open(fd, "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise SourceError(
                        f"cannot read {full}: it is not a regular file (a FIFO, socket or device)"
                    )
                size = st.st_size
                if size > MAX_FILE_BYTES:
                    raise FileTooLarge(rel, size, MAX_FILE_BYTES)
                data = fh.read(MAX_FILE_BYTES + 1)  # a file that grows meanwhile is cut here
        except OSError as e:
            raise SourceError(f"cannot read {full}: {e.strerror}") from e
        if len(data) > MAX_FILE_BYTES:
            raise FileTooLarge(rel, max(size, len(data)), MAX_FILE_BYTES)
        return data

    def read(self, path: str) -> bytes:
        if path in self._data:
            return self._data[path]
        return self._read_disk(os.path.join(self.root, path), path)
