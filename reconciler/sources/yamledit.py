"""Round-trip edits of one YAML document inside a file (the only ruamel.yaml user).

``reconciler pause``, ``resume``, ``assume-ownership`` and ``clone`` change a schedule the
GitOps way: they edit its YAML in the working tree. Only the document being edited is parsed
and written again, with ruamel.yaml's round-trip mode (comments, key order, flow style and
quoting are kept) and the indentation the document already uses, so the rest of the file stays
byte for byte as it was. Pure text in, text out: the caller reads and writes the file.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

_SEPARATOR = re.compile(r"^(---|\.\.\.)([ \t].*)?$")
_KEY_LINE = re.compile(r"^( *)[^\s#-][^:#]*:(\s|$)")
_DASH_LINE = re.compile(r"^( *)- ")


Doc = CommentedMap
"""A mapping of a document being edited (keeps its comments, order and style)."""

Change = Callable[[CommentedMap], None]
"""Changes one document's data in place."""


class EditError(Exception):
    """The document cannot be edited this way (the message says why, in one line)."""


@dataclass(frozen=True)
class Segment:
    """The lines ``[start, end)`` (0-based) of one document of a file, without separators."""

    start: int
    end: int


def segments(lines: list[str]) -> list[Segment]:
    """The documents of a file as line ranges, split at ``---`` and ``...`` lines."""
    out: list[Segment] = []
    start = 0
    for i, line in enumerate(lines):
        if _SEPARATOR.match(line.rstrip("\r\n")):
            out.append(Segment(start, i))
            start = i + 1
    out.append(Segment(start, len(lines)))
    return out


def _indents(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) that the document uses."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    steps: list[int] = []
    offsets: list[int] = []
    for prev, line in itertools.pairwise(lines):
        before = len(prev) - len(prev.lstrip(" "))
        now = len(line) - len(line.lstrip(" "))
        if _KEY_LINE.match(prev) and prev.rstrip().endswith(":"):
            if _DASH_LINE.match(line):
                offsets.append(now - before)
            elif now > before:
                steps.append(now - before)
    mapping = min(steps) if steps else 2
    offset = min(offsets) if offsets else mapping
    return mapping, offset + 2, offset


def _yaml(text: str) -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    mapping, sequence, offset = _indents(text)
    y.indent(mapping=mapping, sequence=sequence, offset=offset)
    return y


def _segment_of(lines: list[str], line: int) -> Segment:
    for seg in segments(lines):
        if seg.start < line <= seg.end:
            return seg
    raise EditError(f"no document at line {line}")


def _load(y: YAML, text: str) -> CommentedMap:
    try:
        data = y.load(text)
    except YAMLError as e:
        raise EditError(f"the document cannot be read for editing: {e}") from None
    if not isinstance(data, CommentedMap):
        raise EditError("the document is not a mapping")
    return data


def _dump(y: YAML, data: Any) -> str:
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()


def edit_document(text: str, line: int, change: Change) -> str:
    """``text`` with the document that holds 1-based ``line`` changed by ``change``."""
    lines = text.splitlines(keepends=True)
    seg = _segment_of(lines, line)
    body = "".join(lines[seg.start : seg.end])
    y = _yaml(body)
    data = _load(y, body)
    change(data)
    new = _dump(y, data)
    if body and not body.endswith("\n"):
        new = new.rstrip("\n")
    return "".join(lines[: seg.start]) + new + "".join(lines[seg.end :])


def append_copy(text: str, line: int, change: Change) -> str:
    """``text`` with a copy of the document that holds ``line``, changed by ``change``,
    appended as a new document at the end of the file."""
    lines = text.splitlines(keepends=True)
    seg = _segment_of(lines, line)
    body = "".join(lines[seg.start : seg.end])
    y = _yaml(body)
    data = _load(y, body)
    change(data)
    copy = _dump(y, data)
    head = text if text.endswith("\n") or not text else text + "\n"
    return head + "---\n" + copy


def set_key(mapping: CommentedMap, key: str, value: Any, after: tuple[str, ...] = ()) -> None:
    """Set ``key``; a new key goes right after the first of ``after`` present, else last."""
    if key in mapping:
        mapping[key] = value
        return
    keys = list(mapping.keys())
    for anchor in after:
        if anchor in keys:
            mapping.insert(keys.index(anchor) + 1, key, value)
            return
    mapping[key] = value
