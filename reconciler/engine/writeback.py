"""Everyday actions as Git changes: pause, resume, assume ownership of and clone a schedule.

The GitOps form of Otter's and CIPP's buttons and Nautobot's "assume ownership": the schedule's
YAML in the working tree of a local repository is edited (round-trip, so comments, order and
quoting survive: :mod:`reconciler.sources.yamledit`), the result is validated, and, when asked,
the one file is committed with the author of the Git configuration. The reconciler never
pushes; the daemon applies the commit like any other. A change that would add a validation
error is not written at all. Called by :mod:`reconciler.cli.writeback`.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from reconciler.engine.desired import load_source, open_snapshot
from reconciler.errors import UsageError
from reconciler.loading.loader import LoadResult
from reconciler.model.diagnostics import Diagnostic, Severity, did_you_mean
from reconciler.sources import git, yamledit


@dataclass
class Edit:
    """One edited file, before it is written."""

    schedule: str
    action: str
    path: str
    """Relative to the repository."""
    file: Path
    before: str
    after: str
    message: str
    """The commit message (its first line says what and why)."""
    line: int = 0
    new_errors: list[Diagnostic] = field(default_factory=list)

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                f"a/{self.path}",
                f"b/{self.path}",
            )
        )


def _load(repo: str, now: datetime) -> LoadResult:
    if git.is_url(repo):
        raise UsageError(
            f"{git.redact(repo)} is a URL: these commands edit a working tree, give a local "
            "clone (the reconciler never pushes)"
        )
    opened = open_snapshot(repo, None, "worktree")
    if opened.git is not None:  # a bare repository is read at HEAD: nothing to edit
        raise UsageError(f"{repo} is a bare repository: it has no working tree to edit")
    return load_source(opened, now)


def _errors(result: LoadResult) -> set[tuple[str, str, str]]:
    return {(d.path, d.code, d.message) for d in result.diagnostics if d.severity is Severity.ERROR}


def _locate(repo: str, name: str, now: datetime) -> tuple[str, int]:
    result = _load(repo, now)
    names = []
    for doc in result.documents:
        if doc.kind != "Schedule":
            continue
        if doc.name == name:
            return doc.path, doc.line
        names.append(doc.name)
    hint = did_you_mean(name, names)
    broken = any(name in d.message for d in result.diagnostics)
    raise UsageError(
        f'no valid Schedule "{name}" in the working tree of {repo}'
        + (f"; {hint}" if hint else "")
        + ("; fix the errors that `reconciler validate` shows for it first" if broken else "")
    )


def _spec(doc: yamledit.Doc) -> yamledit.Doc:
    spec = doc.get("spec")
    if not isinstance(spec, yamledit.Doc):
        raise UsageError("the schedule's spec is not a block mapping that can be edited")
    return spec


def _edit(
    repo: str, name: str, action: str, message: str, now: datetime, change: yamledit.Change
) -> Edit:
    path, line = _locate(repo, name, now)
    file = Path(repo) / path
    before = file.read_text(encoding="utf-8")
    try:
        if action == "clone":
            after = yamledit.append_copy(before, line, change)
        else:
            after = yamledit.edit_document(before, line, change)
    except yamledit.EditError as e:
        raise UsageError(f"{path}:{line}: {e}") from None
    return Edit(name, action, path, file, before, after, message, line)


def pause(repo: str, name: str, note: str | None, now: datetime) -> Edit:
    def change(doc: yamledit.Doc) -> None:
        spec = _spec(doc)
        if spec.get("enabled") is False and (note is None or spec.get("pauseNote") == note):
            raise UsageError(f'schedule "{name}" is paused already')
        yamledit.set_key(spec, "enabled", False, after=("when", "owner", "template"))
        if note is not None:
            yamledit.set_key(spec, "pauseNote", note, after=("enabled",))

    why = f": {note}" if note else ""
    return _edit(repo, name, "pause", f"Pause schedule {name}{why}", now, change)


def resume(repo: str, name: str, now: datetime) -> Edit:
    def change(doc: yamledit.Doc) -> None:
        spec = _spec(doc)
        if spec.get("enabled", True) is not False:
            raise UsageError(f'schedule "{name}" is not paused (enabled is not false)')
        del spec["enabled"]
        if "pauseNote" in spec:
            del spec["pauseNote"]

    return _edit(repo, name, "resume", f"Resume schedule {name}", now, change)


def assume_ownership(repo: str, name: str, user: str, now: datetime) -> Edit:
    def change(doc: yamledit.Doc) -> None:
        spec = _spec(doc)
        if spec.get("owner") == user:
            raise UsageError(f'{user} owns schedule "{name}" already')
        yamledit.set_key(spec, "owner", user, after=("template",))

    return _edit(
        repo,
        name,
        "assume-ownership",
        f"Schedule {name} is owned by {user} from now on",
        now,
        change,
    )


def clone(repo: str, name: str, new_name: str, now: datetime) -> Edit:
    """A copy of the schedule named ``new_name``, in the same file, paused (two identical
    active schedules would run the same job twice): edit it, then resume it."""

    def change(doc: yamledit.Doc) -> None:
        meta = doc.get("metadata")
        if not isinstance(meta, yamledit.Doc):
            raise UsageError("the schedule's metadata is not a mapping that can be edited")
        meta["name"] = new_name
        spec = _spec(doc)
        yamledit.set_key(spec, "enabled", False, after=("when", "owner", "template"))
        yamledit.set_key(spec, "pauseNote", f"cloned from {name}", after=("enabled",))

    return _edit(repo, name, "clone", f"Clone schedule {name} as {new_name} (paused)", now, change)


def write_validated(repo: str, edit: Edit, now: datetime) -> Edit:
    """Write ``edit`` if it adds no validation error (errors the tree had before stay
    allowed); otherwise put the file back as it was and return the edit with ``new_errors``."""
    before = _errors(_load(repo, now))
    tmp = edit.file.with_name(f".{edit.file.name}.reconciler-edit")
    tmp.write_text(edit.after, encoding="utf-8")
    mode = edit.file.stat().st_mode
    os.chmod(tmp, mode & 0o7777)
    os.replace(tmp, edit.file)
    result = _load(repo, now)
    fresh = [
        d
        for d in result.diagnostics
        if d.severity is Severity.ERROR and (d.path, d.code, d.message) not in before
    ]
    if fresh:
        edit.file.write_text(edit.before, encoding="utf-8")
        edit.new_errors = fresh
    return edit


def commit(repo: str, edit: Edit) -> str:
    """Commit the edited file alone; returns the commit's SHA."""
    if git.repository_kind(repo) != "worktree":
        raise UsageError(f"--commit needs a Git working tree; {repo} is not one")
    return git.commit_paths(repo, [edit.path], edit.message)
