"""The loader: snapshot in, desired state and diagnostics out. Pure (I/O only via arguments).

Stages: pick the YAML files (Settings ``exclude`` applied) -> per file, parse and validate
each document (cached by blob SHA, so an unchanged file is never parsed again) -> cross-document
checks -> :class:`LoadResult`. Positions cost nothing on the fast path: a file is re-parsed for
positions only when a cross-document check reports a problem in it.
"""

from __future__ import annotations

import marshal
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Protocol

import yaml

from reconciler.loading.crossref import CrossChecker, Loc, normalize_repo_path, resolve_repo_file
from reconciler.loading.documents import LoadedDocument, load_document, rejected_identity
from reconciler.loading.yamlparse import ParsedDocument, locate, parse, too_large
from reconciler.model.desired import DesiredState
from reconciler.model.diagnostics import Diagnostic, DiagnosticSink, Position, Severity
from reconciler.model.documents import Settings
from reconciler.model.snapshot import Entry, EntryType, FileTooLarge, Snapshot

SETTINGS_FILES = ("reconciler.yaml", "reconciler.yml")


class ParseCache(Protocol):
    """Per-blob results, keyed by Git blob SHA. Implemented in :mod:`reconciler.sources.cache`."""

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]: ...

    def put_many(self, items: Mapping[str, bytes]) -> None: ...


@dataclass(frozen=True, slots=True)
class FileResult:
    """What one file holds, independent of its path (so it can be cached by blob SHA)."""

    documents: tuple[LoadedDocument, ...]
    diagnostics: tuple[Diagnostic, ...]
    #: (kind, name) of our documents that failed validation ("" when the name is unknown)
    rejected: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        return marshal.dumps(
            (
                [d.to_tuple() for d in self.documents],
                [_diag_tuple(d) for d in self.diagnostics],
                list(self.rejected),
            )
        )

    @classmethod
    def decode(cls, path: str, data: bytes) -> FileResult:
        docs, diags, rejected = marshal.loads(data)
        return cls(
            tuple(LoadedDocument.from_tuple(path, t) for t in docs),
            tuple(_diag_from(path, t) for t in diags),
            tuple(tuple(r) for r in rejected),
        )

    def at(self, path: str) -> FileResult:
        if all(d.path == path for d in self.documents) and all(
            d.path == path for d in self.diagnostics
        ):
            return self
        return FileResult(
            tuple(d.at(path) for d in self.documents),
            tuple(d.with_path(path) for d in self.diagnostics),
            self.rejected,
        )


def _diag_tuple(d: Diagnostic) -> tuple[int, int, str, str, str, str | None]:
    return (d.line, d.column, str(d.severity), d.code, d.message, d.hint)


def _diag_from(path: str, t: tuple[int, int, str, str, str, str | None]) -> Diagnostic:
    line, col, sev, code, msg, hint = t
    return Diagnostic(path, line, col, Severity(sev), code, msg, hint)


class _CheckCache:
    """Per-schedule cross-check results, stored in the same cache as file results."""

    PREFIX = "check:"

    def __init__(self, backend: ParseCache | None) -> None:
        self.backend = backend
        self.memory: dict[str, list[Diagnostic]] = {}

    def get_many(self, keys: Iterable[str]) -> dict[str, list[Diagnostic]]:
        wanted = list(keys)
        out = {k: self.memory[k] for k in wanted if k in self.memory}
        missing = [self.PREFIX + k for k in wanted if k not in out]
        if self.backend is not None and missing:
            for key, blob in self.backend.get_many(missing).items():
                try:
                    diags = [_diag_from("", t) for t in marshal.loads(blob)]
                except (ValueError, EOFError, TypeError):
                    continue
                out[key[len(self.PREFIX) :]] = self.memory[key[len(self.PREFIX) :]] = diags
        return out

    def put_many(self, items: Mapping[str, list[Diagnostic]]) -> None:
        self.memory.update(items)
        if self.backend is not None and items:
            self.backend.put_many(
                {
                    self.PREFIX + k: marshal.dumps([_diag_tuple(d) for d in v])
                    for k, v in items.items()
                }
            )


#: The diagnostics of an owner who is not a Policy user or lacks ``run`` (access changes).
OWNER_CODES = frozenset({"ref-owner", "owner-permission"})


@dataclass
class LoadResult:
    """The outcome of loading one revision."""

    revision: str | None
    desired: DesiredState | None
    diagnostics: list[Diagnostic]
    documents: list[LoadedDocument] = field(default_factory=list)
    files_read: int = 0
    files_cached: int = 0
    owner_problems: dict[str, str] = field(default_factory=dict)
    """Schedules whose owner is not a Policy user or lacks ``run`` on its template."""
    access_desired: DesiredState | None = None
    """The desired state when its only errors are such owners: the access-change rule of the
    contract may still apply it (if those schedules are unchanged since the state in force)."""

    @property
    def errors(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity is Severity.WARNING)

    @property
    def ok(self) -> bool:
        return self.errors == 0


@lru_cache(maxsize=256)
def _glob_re(pattern: str) -> re.Pattern[str]:
    """gitignore-like globs: ``*`` within a segment, ``**`` across; no ``/`` = any depth."""
    p = pattern.strip().lstrip("/")
    if p.endswith("/"):
        p += "**"
    anchored = "/" in pattern.strip().rstrip("/")
    out = ""
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif p.startswith("**", i):
            out += ".*"
            i += 2
        elif p[i] == "*":
            out += "[^/]*"
            i += 1
        elif p[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(p[i])
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"^{prefix}{out}(?:/.*)?$")


def excluded(path: str, patterns: Iterable[str]) -> bool:
    return any(_glob_re(p).match(path) for p in patterns)


def is_yaml(path: str) -> bool:
    return path.lower().endswith((".yaml", ".yml"))


def load_file(path: str, data: bytes) -> FileResult:
    """Parse and validate the documents of one file (no cross-document checks)."""
    parsed = parse(path, data)
    docs: list[LoadedDocument] = []
    diags = list(parsed.diagnostics)
    rejected: list[tuple[str, str]] = []
    for pd in parsed.documents:
        ld, problems = load_document(pd, path)
        diags.extend(problems)
        if ld is not None:
            docs.append(ld)
        elif any(d.severity is Severity.ERROR for d in problems):
            identity = rejected_identity(pd)
            if identity is not None:
                rejected.append(identity)
    return FileResult(tuple(docs), tuple(diags), tuple(rejected))


def broken_links(
    entries: Mapping[str, Entry], links: Iterable[Entry], sink: DiagnosticSink
) -> None:
    """Warn about symlinks that can never be read: a loop (by any name), and a ``*.yaml``
    link to nothing. Either is skipped, and a file someone meant to be read is not; a link
    that leaves the repository is an error of the cross-document checks instead."""
    folders: set[str] | None = None
    for link in links:
        target = link.link_target or ""
        final, problem = resolve_repo_file(entries, link.path)
        if problem == "symlink-loop":
            sink.warning(
                Position(link.path),
                "symlink-loop",
                f'symlink "{link.path}" leads back to itself ("{target}") and never reaches a file',
                "point it at a file or folder of the repository, or delete it",
            )
        elif final is None and problem == "playbook-missing" and is_yaml(link.path):
            to = normalize_repo_path(posixpath.dirname(link.path), target) or target
            if folders is None:
                folders = {p.rsplit("/", i)[0] for p in entries for i in range(1, p.count("/") + 1)}
            if to in folders:
                continue  # a folder named like a YAML file
            sink.warning(
                Position(link.path),
                "symlink-dangling",
                f'symlink "{link.path}" points to "{to}", which does not exist, so it is not read',
                "commit the file it names, point it at one that exists, or delete it",
            )


class _Locator:
    """Positions fields of loaded documents by parsing their file again, once, on demand."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._nodes: dict[str, list[ParsedDocument]] = {}

    def _node(self, ld: LoadedDocument) -> yaml.Node | None:
        if ld.path not in self._nodes:
            self._nodes[ld.path] = list(parse(ld.path, self.snapshot.read(ld.path)).documents)
        docs = self._nodes[ld.path]
        return docs[ld.index].node if ld.index < len(docs) else None

    def pos(self, ld: LoadedDocument, loc: Loc, key: bool = False) -> Position:
        node = self._node(ld)
        if node is None:
            return Position(ld.path, ld.line, 1)
        line, col = locate(node, loc, key)
        return Position(ld.path, line, col)

    def quoted(self, ld: LoadedDocument, loc: Loc) -> bool:
        node = self._node(ld)
        for part in loc:
            if not isinstance(node, yaml.MappingNode):
                return False
            node = next((v for k, v in node.value if k.value == part), None)
        return isinstance(node, yaml.ScalarNode) and node.style in ("'", '"')


class Loader:
    """Loads snapshots, reusing per-blob results from an optional cache across calls."""

    def __init__(self, cache: ParseCache | None = None) -> None:
        self.cache = cache
        self.checks = _CheckCache(cache)
        self._memory: dict[str, FileResult] = {}

    def _results(
        self, snapshot: Snapshot, entries: list[Entry]
    ) -> tuple[dict[str, FileResult], int]:
        """Each entry's result, and how many entries were served without parsing.

        An entry counts as cached when this loader or the on-disk cache already held the
        result of its blob; files read and parsed now are the rest.
        """
        wanted = [e for e in entries if e.blob_id not in self._memory]
        hits = len(entries) - len(wanted)
        if self.cache is not None and wanted:
            by_blob = {e.blob_id: e for e in wanted}
            for key, blob in self.cache.get_many(by_blob).items():
                try:
                    self._memory[key] = FileResult.decode(by_blob[key].path, blob)
                    hits += 1
                except (ValueError, EOFError, TypeError):  # damaged: parse it again
                    continue
        fresh: dict[str, bytes] = {}
        for e in entries:
            if e.blob_id not in self._memory:
                try:
                    data = snapshot.read(e.path)
                except FileTooLarge as big:  # refused unread (a working tree)
                    result = FileResult((), (too_large(e.path, big.size),))
                else:
                    result = load_file(e.path, data)
                self._memory[e.blob_id] = result
                fresh[e.blob_id] = result.encode()
        if self.cache is not None and fresh:
            self.cache.put_many(fresh)
        return {e.path: self._memory[e.blob_id].at(e.path) for e in entries}, hits

    def load(self, snapshot: Snapshot, now: datetime) -> LoadResult:
        entries = snapshot.entries
        sink = DiagnosticSink()
        yaml_entries = [
            e for p, e in sorted(entries.items()) if is_yaml(p) and e.type is EntryType.FILE
        ]
        # Symlinked YAML files are not read through the link: a link inside the repository
        # names a file that is read under its own path; one that leaves it is an error that
        # the cross-document pass reports; one that leads nowhere is warned about below.
        # Settings first: its exclude globs decide which other files are read.
        first = [e for e in yaml_entries if e.path in SETTINGS_FILES]
        results, hits = self._results(snapshot, first)
        patterns: list[str] = []
        for r in results.values():
            for ld in r.documents:
                if ld.kind == "Settings" and isinstance(ld.doc, Settings):
                    patterns = list(ld.doc.spec.exclude)
        rest = [
            e
            for e in yaml_entries
            if e.path not in SETTINGS_FILES and not excluded(e.path, patterns)
        ]
        more, more_hits = self._results(snapshot, rest)
        results.update(more)
        hits += more_hits
        documents: list[LoadedDocument] = []
        rejected: set[tuple[str, str]] = set()
        for path in sorted(results):
            r = results[path]
            rejected.update(r.rejected)
            sink.extend(r.diagnostics)
            documents.extend(r.documents)
        links = [e for e in entries.values() if e.type is EntryType.SYMLINK]
        if links:
            broken_links(entries, [e for e in links if not excluded(e.path, patterns)], sink)
        # A Settings document outside reconciler.yaml still applies its excludes.
        late = [
            d.doc.spec.exclude
            for d in documents
            if d.kind == "Settings" and d.path not in SETTINGS_FILES and isinstance(d.doc, Settings)
        ]
        if late:
            globs = [g for gs in late for g in gs]
            documents = [d for d in documents if not excluded(d.path, globs)]
            sink.items = [d for d in sink.items if not excluded(d.path, globs)]
        checker = CrossChecker(
            documents,
            entries,
            snapshot.read,
            _Locator(snapshot),
            now,
            sink,
            snapshot.revision,
            rejected=rejected,
        )
        desired = checker.run(self.checks)
        diagnostics = sink.sorted()
        ok = not sink.has_errors
        owner_only = not ok and all(
            d.code in OWNER_CODES for d in diagnostics if d.severity is Severity.ERROR
        )
        return LoadResult(
            revision=snapshot.revision,
            desired=desired if ok else None,
            diagnostics=diagnostics,
            documents=documents,
            files_read=len(first) + len(rest) - hits,
            files_cached=hits,
            owner_problems=dict(checker.owner_problems),
            access_desired=desired if owner_only else None,
        )
