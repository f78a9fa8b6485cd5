"""Diagnostics: user mistakes collected as values, never raised. Pure.

Every problem in a desired state becomes one :class:`Diagnostic` with a stable code from
:data:`CODES`. The CLI renders them as ``path:line:col: error[CODE]: message``; the docs
(``docs/diagnostics.md``) list every code, and a test keeps that list in step with this module.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Severity(StrEnum):
    """How bad a diagnostic is."""

    ERROR = "error"  #: the revision cannot be applied
    WARNING = "warning"  #: applied, but probably not what the author meant


#: Every diagnostic code with a one-line summary. Codes are stable: scripts may match on them.
CODES: dict[str, str] = {
    # files and YAML
    "file-encoding": "a YAML file is not valid UTF-8",
    "file-binary": "a YAML file holds binary data (NUL bytes)",
    "file-too-large": "a YAML file is larger than the 1 MiB limit",
    "file-unreadable": "a file could not be read from the revision",
    "yaml-syntax": "YAML syntax error",
    "yaml-tab": "a tab character where YAML allows only spaces",
    "yaml-duplicate-key": "the same key twice in one mapping",
    "yaml-alias-limit": "anchors and aliases expand past the node limit (an alias bomb)",
    "yaml-too-deep": "a document nests deeper than the limit",
    "yaml-value": "a value that cannot be read as its tag says (!!int x), or an integer too long",
    # envelope and schema
    "api-version": "an apiVersion starting with reconciler/ that is not reconciler/v1",
    "kind-unknown": "a kind that reconciler does not know",
    "field-unknown": "a field that the kind does not have",
    "field-missing": "a required field is missing",
    "field-invalid": "a field has the wrong type or an invalid value",
    "name-invalid": "a name (metadata.name, a server name) is not a DNS label",
    "name-duplicate": "two documents of the same kind with the same name",
    "settings-duplicate": "more than one Settings document",
    "server-duplicate": "a server name defined twice across Inventory documents",
    "user-duplicate": "a Policy user defined twice",
    "timezone-unknown": "not an IANA time zone name",
    # references
    "ref-template": "a schedule names a template that does not exist",
    "ref-owner": "a schedule's owner is not a Policy user",
    "ref-channel": "a notify entry names a channel that does not exist",
    "ref-server": "a target or approver names a server that does not exist",
    "ref-role": "a server or target names a role that is not declared",
    "ref-environment": "a server or target names an environment that is not declared",
    "ref-user": "an approver or permission names a user or group that does not exist",
    "owner-permission": "the owner of a schedule does not hold run on its template",
    "targets-empty": "the targets resolve to no server",
    # variables
    "var-missing": "a required variable has no value",
    "var-unknown": "a variable that the template does not declare",
    "var-type": "a variable value of the wrong type",
    "var-choice": "a value that is not among the variable's choices",
    "var-secret-literal": "a sensitive variable given as a literal instead of valueFrom",
    "var-definition": "a variable prompt that contradicts itself",
    "var-reserved": "a variable named like one of Ansible's own (ansible_*, a magic variable), "
    "or not a plain identifier, where a caller could give its value",
    # paths
    "playbook-missing": "the playbook does not exist at this revision",
    "path-escapes": "a path that is absolute or leaves the repository",
    "symlink-escapes": "a symlink that points outside the repository",
    "symlink-loop": "a symlink that leads back to itself and never reaches a file",
    "symlink-dangling": "a *.yaml symlink to a file that does not exist",
    # time
    "when-form": "when: must hold exactly one of at, every, daily, weekly, monthly, yearly, cron",
    "when-invalid": "a when: value that cannot be parsed (cron expression, time of day, duration)",
    "when-window": "start is not before end",
    "when-never": "a schedule that can never fire",
    "when-past": "an at: time that has already passed",
    # signed commits (requireSignedCommits)
    "commit-unsigned": "requireSignedCommits is in force and the commit is not signed",
    "commit-bad-signature": "the commit's signature does not verify, or its key is not trusted",
    "commit-unverifiable": "the signature cannot be checked here (no gpg or ssh-keygen, or the "
    "repository is a plain directory)",
}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem, positioned in the repository (``line`` and ``column`` are 1-based)."""

    path: str
    line: int
    column: int
    severity: Severity
    code: str
    message: str
    hint: str | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:  # a programming error, caught by the tests
            raise ValueError(f"unknown diagnostic code {self.code!r}")

    def with_path(self, path: str) -> Diagnostic:
        return replace(self, path=path)

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path, self.line, self.column, self.code)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "severity": str(self.severity),
            "code": self.code,
            "message": self.message,
        }
        if self.hint:
            out["hint"] = self.hint
        return out


@dataclass(frozen=True, slots=True)
class Position:
    """Where something is in the repository; used to place diagnostics about it."""

    path: str
    line: int = 1
    column: int = 1


@dataclass
class DiagnosticSink:
    """Collects diagnostics; the loader's stages append to one of these."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, pos: Position, code: str, message: str, hint: str | None = None) -> None:
        self.items.append(
            Diagnostic(pos.path, pos.line, pos.column, Severity.ERROR, code, message, hint)
        )

    def warning(self, pos: Position, code: str, message: str, hint: str | None = None) -> None:
        self.items.append(
            Diagnostic(pos.path, pos.line, pos.column, Severity.WARNING, code, message, hint)
        )

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        self.items.extend(diags)

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=Diagnostic.sort_key)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A ``did you mean "x"?`` hint for a misspelt name, or None when nothing is close."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f'did you mean "{match[0]}"?' if match else None
