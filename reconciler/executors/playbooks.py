"""Static inspection of a playbook before a simulation: which tasks would run for real. I/O (reads
the project's files), no side effects.

Check mode runs tasks marked ``check_mode: false`` for real (measured), so a simulation of a
playbook holding such tasks is not harmless. :func:`real_tasks` finds them before anything runs:
plays, ``pre_tasks``/``tasks``/``post_tasks``/``handlers``, blocks (``block``/``rescue``/
``always``), ``check_mode: false`` inherited from a play or block, task files pulled in with a
literal ``import_tasks``/``include_tasks`` path, roles under ``roles/<name>/tasks/main.yml``
(plays' ``roles:`` and ``import_role``/``include_role`` with a literal name), and imported
playbooks. A templated ``check_mode`` value (``"{{ ... }}"``) counts as "may run for real".
Paths that are templated cannot be followed; they are reported as unknown so the caller can say
so. The inspection is best effort by nature (dynamic includes); the runtime findings of the
check-mode run complement it.

:func:`escape` is the containment check a run makes on its own copy of the repository before
ansible-playbook starts: a state applied from a plain directory runs the directory as it is at
run time, so a symlink added since ``validate`` ran, or an import edited to an absolute path,
could otherwise run code from outside the repository.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

TASK_LISTS = ("pre_tasks", "tasks", "post_tasks", "handlers")
BLOCK_LISTS = ("block", "rescue", "always")
_NS = ("", "ansible.builtin.", "ansible.legacy.")
_INCLUDE_TASKS = {f"{p}{n}" for p in _NS for n in ("import_tasks", "include_tasks", "include")}
_INCLUDE_ROLE = {f"{p}{n}" for p in _NS for n in ("import_role", "include_role")}
_IMPORT_PLAYBOOK = {f"{p}import_playbook" for p in _NS}
_INCLUDE_VARS = {f"{p}include_vars" for p in _NS}
_MAX_FILES = 200


@dataclass(frozen=True)
class RealTask:
    """A task that runs for real under ``--check``: where it is and why."""

    task: str
    path: str
    reason: str


class _Loader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's tags (``!vault``, ``!unsafe``) as plain values."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    return None


_Loader.add_multi_constructor("!", _any_tag)


def _check_mode_value(value: Any) -> str | None:
    """``"false"`` when it forces real execution, ``"templated"`` when unknown, else None."""
    if value is False or (isinstance(value, str) and value.strip().lower() in ("false", "no")):
        return "false"
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return "templated"
    return None


def _quoted(path: str) -> str:
    """A path for a one-line message: quoted, control characters and undecodable bytes escaped."""
    return json.dumps(path, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()


def _is_templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


class _Walker:
    def __init__(self, project_dir: str) -> None:
        self.root = os.path.realpath(project_dir)
        self.found: list[RealTask] = []
        self.unknown: list[str] = []
        self.visited: set[str] = set()
        #: references (with a literal path) that lead outside the project, one line each
        self.escapes: list[str] = []

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root + os.sep)

    def _leaves(self, target: str, where: str, what: str) -> bool:
        """Whether ``target`` (a joined path) resolves outside the project; recorded if so."""
        if self._inside(os.path.realpath(target)):
            return False
        shown = os.path.normpath(target)
        if self._inside(shown):
            shown = os.path.relpath(shown, self.root)
        where_ = _quoted(self._rel(where))[1:-1]
        self.escapes.append(f"{where_}: {what} {_quoted(shown)} leads outside the repository")
        return True

    def _vars_files(self, entries: Any, where: str, base: str, what: str) -> None:
        """Check literal vars file paths (a list of paths, or of first-found lists)."""
        for entry in entries if isinstance(entries, list) else [entries]:
            for target in entry if isinstance(entry, list) else [entry]:
                if isinstance(target, str) and not _is_templated(target):
                    self._leaves(os.path.join(base, target), where, what)

    def _load(self, path: str) -> Any:
        real = os.path.realpath(path)
        if real in self.visited or len(self.visited) > _MAX_FILES:
            return None
        if not self._inside(real):
            self.unknown.append(f"{path}: outside the project")
            return None
        self.visited.add(real)
        try:
            with open(real, encoding="utf-8") as fh:
                return yaml.load(fh, Loader=_Loader)
        except (OSError, yaml.YAMLError) as exc:
            self.unknown.append(f"{os.path.relpath(real, self.root)}: {type(exc).__name__}")
            return None

    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def playbook(self, path: str) -> None:
        plays = self._load(path)
        if not isinstance(plays, list):
            return
        base = os.path.dirname(path)
        for play in plays:
            if not isinstance(play, dict):
                continue
            for key in _IMPORT_PLAYBOOK:
                target = play.get(key)
                if isinstance(target, str) and not _is_templated(target):
                    joined = os.path.join(base, target)
                    if not self._leaves(joined, path, "import_playbook"):
                        self.playbook(joined)
                elif target is not None:
                    self.unknown.append(f"{self._rel(path)}: import_playbook {target!r}")
            self._vars_files(play.get("vars_files"), path, base, "vars_files")
            forced = _check_mode_value(play.get("check_mode"))
            for key in TASK_LISTS:
                self.tasks(play.get(key), path, base, forced)
            for role in play.get("roles") or []:
                name = role.get("role") or role.get("name") if isinstance(role, dict) else role
                role_forced = forced
                if isinstance(role, dict):
                    role_forced = _check_mode_value(role.get("check_mode")) or forced
                self.role(name, path, base, role_forced)

    def role(self, name: Any, where: str, base: str, forced: str | None) -> None:
        if not isinstance(name, str) or _is_templated(name):
            self.unknown.append(f"{self._rel(where)}: role {name!r}")
            return
        # Ansible takes a path as a role name too
        climbs = os.path.isabs(name) or ".." in name.split("/")
        if climbs and self._leaves(os.path.join(base, name), where, "role"):
            return
        for roles_dir in (os.path.join(base, "roles"), os.path.join(self.root, "roles")):
            main = os.path.join(roles_dir, name, "tasks")
            for candidate in ("main.yml", "main.yaml"):
                path = os.path.join(main, candidate)
                if os.path.isfile(path):
                    self.task_file(path, forced)
                    handlers = os.path.join(roles_dir, name, "handlers", candidate)
                    if os.path.isfile(handlers):
                        self.task_file(handlers, forced)
                    return
        self.unknown.append(f"{self._rel(where)}: role {name!r} not in the project")

    def task_file(self, path: str, forced: str | None) -> None:
        self.tasks(self._load(path), path, os.path.dirname(path), forced)

    def tasks(self, items: Any, path: str, base: str, forced: str | None) -> None:
        if not isinstance(items, list):
            return
        for task in items:
            if not isinstance(task, dict):
                continue
            mine = _check_mode_value(task.get("check_mode")) or forced
            if any(k in task for k in BLOCK_LISTS):
                for key in BLOCK_LISTS:
                    self.tasks(task.get(key), path, base, mine)
                continue
            name = str(task.get("name") or next(iter(task), "?"))
            include = next((task[k] for k in _INCLUDE_TASKS if k in task), None)
            role = next((task[k] for k in _INCLUDE_ROLE if k in task), None)
            if include is not None:
                target = include.get("file") if isinstance(include, dict) else include
                if isinstance(target, str) and not _is_templated(target):
                    joined = os.path.join(base, target)
                    if not self._leaves(joined, path, "include"):
                        self.task_file(joined, mine)
                else:
                    self.unknown.append(f"{self._rel(path)}: include {target!r}")
                continue
            if role is not None:
                self.role(role.get("name") if isinstance(role, dict) else role, path, base, mine)
                continue
            varsfile = next((task[k] for k in _INCLUDE_VARS if k in task), None)
            if varsfile is not None:
                if isinstance(varsfile, dict):
                    varsfile = varsfile.get("file") or varsfile.get("dir")
                self._vars_files(varsfile, path, base, "include_vars")
            if mine == "false":
                self.found.append(RealTask(name, self._rel(path), "check_mode: false"))
            elif mine == "templated":
                self.found.append(RealTask(name, self._rel(path), "check_mode is templated"))


def real_tasks(project_dir: str, playbook: str) -> tuple[list[RealTask], list[str]]:
    """Tasks of ``playbook`` that would run for real in check mode, and what could not be
    followed (templated includes, missing roles, unreadable files)."""
    walker = _Walker(project_dir)
    walker.playbook(os.path.join(walker.root, playbook))
    return walker.found, walker.unknown + walker.escapes


def _symlink_escape(root: str) -> str | None:
    """The first symlink under ``root`` (in sorted order) that resolves outside it."""
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted([*dirs, *files]):
            path = os.path.join(top, name)
            if not os.path.islink(path):
                continue
            real = os.path.realpath(path)
            if not (real == root or real.startswith(root + os.sep)):
                rel = os.path.relpath(path, root)
                target = _quoted(os.readlink(path))
                return f"symlink {_quoted(rel)} points outside the repository ({target})"
    return None


def escape(project_dir: str, playbook: str) -> str | None:
    """What in the project leads outside it, as one line naming the path, or None.

    Every symlink of the project, wherever it is (``ansible.cfg``, ``roles/``, ``library/``
    are found without an import), must resolve inside it; so must the playbook and every file
    it imports or includes with a literal path: ``import_playbook``, ``import_tasks``/
    ``include_tasks``, roles given as a path, ``vars_files`` and ``include_vars``. Templated
    paths cannot be followed statically.
    """
    root = os.path.realpath(project_dir)
    link = _symlink_escape(root)
    if link is not None:
        return link
    path = os.path.join(root, playbook)
    real = os.path.realpath(path)
    if not (real == root or real.startswith(root + os.sep)):
        return f"playbook {_quoted(playbook)} leads outside the repository (to {_quoted(real)})"
    walker = _Walker(root)
    walker.playbook(path)
    return walker.escapes[0] if walker.escapes else None


def describe(tasks: Iterable[RealTask]) -> str:
    return "; ".join(f"{t.task!r} ({t.path}, {t.reason})" for t in tasks)
