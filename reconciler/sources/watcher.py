"""Watching a local repository for new commits: the only user of watchfiles.

Who calls it: the daemon, which asks for a reconcile pass on every change. What is watched is
the Git directory's refs (``HEAD``, ``packed-refs``, ``refs/**``), not the work tree: a commit,
a merge, a fetch into a branch, a reset all move a ref, while editing files does not change the
desired state (the daemon applies commits). watchfiles' default filter ignores ``.git``, which is
exactly what must be watched here, so the filter is our own. For a plain directory (no Git) every
file change counts.

inotify is used where the file system has it; where it fails (some network and container file
systems), the watcher falls back to polling every ``poll_delay`` seconds.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles

log = logging.getLogger("reconciler.watch")


class RefFilter(watchfiles.BaseFilter):
    """Only changes that can move a ref: ``HEAD``, ``packed-refs`` and anything under ``refs/``
    (lock files included: the rename that follows them is the change that matters)."""

    def __init__(self, git_dir: Path) -> None:
        super().__init__()
        self.git_dir = os.path.realpath(git_dir)

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        rel = os.path.relpath(os.path.realpath(path), self.git_dir)
        if rel.startswith(".."):
            return False
        head = rel.split(os.sep, 1)[0]
        return rel in ("HEAD", "packed-refs") or head == "refs"


class TreeFilter(watchfiles.BaseFilter):
    """A plain directory: every change except in the state's own folder and editor swap files."""

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        parts = Path(path).parts
        name = parts[-1] if parts else ""
        return ".reconciler" not in parts and not name.endswith(("~", ".swp", ".swx"))


def watch(
    paths: list[Path],
    watch_filter: watchfiles.BaseFilter,
    on_change: Callable[[], None],
    stop: threading.Event,
    *,
    poll_delay: float = 2.0,
) -> None:
    """Call ``on_change`` after every burst of changes under ``paths`` until ``stop`` is set.

    Blocks; run it in a thread. Bursts within 50 ms are one call."""
    force_polling = False
    warned = False  # one warning while the paths cannot be watched, not one per retry
    while not stop.is_set():
        try:
            for _changes in watchfiles.watch(
                *paths,
                watch_filter=watch_filter,
                stop_event=stop,
                debounce=50,
                step=20,
                force_polling=force_polling,
                poll_delay_ms=int(poll_delay * 1000),
                raise_interrupt=False,
                yield_on_timeout=False,
                rust_timeout=1000,
            ):
                warned = False  # watching: a later failure warns again
                on_change()
            return
        except (OSError, RuntimeError) as e:
            missing = [str(p) for p in paths if not p.exists()]
            if missing or force_polling:
                if not warned:
                    log.warning(
                        "cannot watch %s: %s; relying on the poll timer, and trying again "
                        "every %.0f s",
                        ", ".join(missing or [str(p) for p in paths]),
                        "no such file or directory" if missing else e,
                        poll_delay,
                    )
                    warned = True
                stop.wait(poll_delay)
                continue
            log.info(
                "inotify is not available for %s (%s): polling every %.0f s", paths, e, poll_delay
            )
            force_polling = True


def watch_git_refs(
    git_dir: Path, on_change: Callable[[], None], stop: threading.Event, poll_delay: float = 2.0
) -> None:
    """Watch the refs of the repository whose Git directory is ``git_dir``."""
    watch([Path(git_dir)], RefFilter(Path(git_dir)), on_change, stop, poll_delay=poll_delay)


def watch_tree(
    root: Path, on_change: Callable[[], None], stop: threading.Event, poll_delay: float = 2.0
) -> None:
    """Watch a plain directory (no Git): every file change asks for a pass."""
    watch([Path(root)], TreeFilter(), on_change, stop, poll_delay=poll_delay)
