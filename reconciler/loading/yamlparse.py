"""YAML parsing for reconciler documents: fast, bounded, and positioned on demand. Pure.

- Parsing uses libyaml (PyYAML's C parser) when available; construction is PyYAML's.
- Scalars resolve as in YAML 1.2's core schema, not YAML 1.1: ``on``/``yes``/``no`` stay
  strings, ``02:00`` stays a string (YAML 1.1 reads it as the sexagesimal 120), timestamps stay
  strings and are parsed by the models.
- Duplicate keys are errors; anchors and aliases are bounded (alias bombs), so are file size and
  nesting depth.
- A value that cannot be constructed as its tag says (``!!int x``, ``!!map [a]``, an unknown
  tag) or an integer past Python's integer-string limit is a ``yaml-value`` diagnostic at its
  node: nothing raises out of :func:`parse`.
- Every constructed document comes with its root node, so any field can be positioned
  (:func:`locate`) without parsing the file a second time.
- :func:`parse_ansible` reads a file that Ansible reads (an imported inventory) with the same
  limits and YAML 1.1 scalars, as Ansible sees them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.model.diagnostics import Diagnostic, Severity

MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 200_000  # nodes of one document, aliases counted at their expanded size
MAX_DEPTH = 100

try:
    _BaseLoader: type = yaml.CSafeLoader
    _C = True
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _BaseLoader = yaml.SafeLoader
    _C = False


class _DuplicateKey(Exception):
    def __init__(self, key: str, first: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


class _BadValue(Exception):
    """A node that cannot be constructed as its tag says; carries the node and the reason."""

    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node, self.message = node, message


_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"

#: What each standard tag holds, for messages about a value that does not fit its tag.
_NOUNS = {
    _NULL: "null",
    _BOOL: "a boolean (true or false)",
    _INT: "an integer",
    _FLOAT: "a number",
    "tag:yaml.org,2002:timestamp": "a timestamp",
    "tag:yaml.org,2002:binary": "base64 data",
    _STR: "a string",
}
_NODE_KINDS = {
    yaml.ScalarNode: "scalar",
    yaml.SequenceNode: "sequence",
    yaml.MappingNode: "mapping",
}


def _tag_name(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag


def _unreadable(node: yaml.Node) -> str:
    """Why ``node`` cannot be constructed as its tag says, in words."""
    tag = _tag_name(node.tag)
    if not isinstance(node, yaml.ScalarNode):
        return f"the tag {tag} does not fit a {_NODE_KINDS.get(type(node), 'node')}"
    text = node.value if len(node.value) <= 40 else node.value[:40] + "..."
    noun = _NOUNS.get(node.tag)
    return f'"{text}" is not {noun} ({tag})' if noun else f'{tag} cannot read "{text}"'


#: Python converts integers of at most this many decimal digits to and from text; a longer
#: one could be read but never printed (in a diagnostic, in JSON), so it is refused.
MAX_INT_DIGITS = 4300
_INT_LIMIT = 10**MAX_INT_DIGITS


def _int_value(node: yaml.ScalarNode, digits: str, base: int, sign: int = 1) -> int:
    if base == 10 and len(digits) > MAX_INT_DIGITS:
        raise _BadValue(
            node,
            f"an integer of {len(digits)} digits is longer than the limit of "
            f"{MAX_INT_DIGITS} digits",
        )
    value = sign * int(digits, base)
    if abs(value) >= _INT_LIMIT:
        raise _BadValue(node, f"the integer is larger than the limit of {MAX_INT_DIGITS} digits")
    return value


class _Constructing:
    """What both loaders share: duplicate keys rejected, and a value that does not fit its tag
    reported at its node instead of escaping as a TypeError or ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)  # type: ignore[misc]
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError):
            raise _BadValue(node, _unreadable(node)) from None

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            tag = _tag_name(node.tag)
            kind = _NODE_KINDS.get(type(node), "node")
            raise _BadValue(node, f"the tag {tag} needs a mapping, not a {kind}")
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE:
                key = key_node.value
                if key in seen:
                    raise _DuplicateKey(str(key), seen[key], key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc, no-any-return]


class Loader(_Constructing, _BaseLoader):  # type: ignore[misc]
    """libyaml parser, YAML 1.2 core resolution, duplicate keys rejected."""

    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}

    # The parser calls these for every node; there are no path resolvers, so they do nothing
    # and resolution is a table lookup on the first character.
    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode:
            if implicit[0]:
                for tag, regexp in self.yaml_implicit_resolvers.get(value[:1], ()):
                    if regexp.match(value):
                        return tag
            return _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP


class AnsibleLoader(_Constructing, _BaseLoader):  # type: ignore[misc]
    """libyaml parser with YAML 1.1 resolution, as Ansible reads its files; duplicate keys
    rejected (Ansible warns and keeps the last)."""


# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), plus merge keys.
_CORE = {
    _BOOL: re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    _INT: re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    _FLOAT: re.compile(
        r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    _NULL: re.compile(r"^(?:~|null|Null|NULL|)$"),
}
for _tag, _first in ((_BOOL, "tTfF"), (_INT, "-+0123456789"), (_FLOAT, "-+0123456789.")):
    Loader.add_implicit_resolver(_tag, _CORE[_tag], list(_first))
Loader.add_implicit_resolver(_NULL, _CORE[_NULL], list("~nN"))
Loader.add_implicit_resolver(_NULL, re.compile(r"^$"), [""])
Loader.add_implicit_resolver(_MERGE, re.compile(r"^(?:<<)$"), ["<"])


def _core_scalar(node: yaml.Node) -> Any:
    """The value of a null, bool, int or float node under the YAML 1.2 core schema.

    The same rule whether the tag was resolved or written (``!!int 12``): a value that the
    schema does not give that tag (``!!int x``, ``!!bool yes``) is refused, not misread.
    """
    tag = node.tag
    if isinstance(node, yaml.ScalarNode) and _CORE[tag].match(node.value):
        v = node.value
        if tag == _INT:
            if v.startswith("0o"):
                return _int_value(node, v[2:], 8)
            if v.startswith("0x"):
                return _int_value(node, v[2:], 16)
            sign = -1 if v.startswith("-") else 1
            return _int_value(node, v.lstrip("+-"), 10, sign)
        if tag == _FLOAT:
            return float(v.lower().replace(".inf", "inf").replace(".nan", "nan"))
        if tag == _BOOL:
            return v in ("true", "True", "TRUE")
        return None
    raise _BadValue(node, _unreadable(node))


for _tag in _CORE:
    Loader.add_constructor(_tag, lambda loader, node: _core_scalar(node))


def _ansible_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """YAML 1.1 integers (``0b1``, octal ``017``, ``1_000``, ``1:30``), bounded."""
    text = str(loader.construct_scalar(node))
    if len(text) > MAX_INT_DIGITS:
        raise _BadValue(
            node,
            f"an integer written with {len(text)} characters is longer than the limit of "
            f"{MAX_INT_DIGITS} digits",
        )
    value = yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)
    if abs(value) >= _INT_LIMIT:
        raise _BadValue(node, f"the integer is larger than the limit of {MAX_INT_DIGITS} digits")
    return int(value)


AnsibleLoader.add_constructor(_INT, _ansible_int)


_Scalar = yaml.ScalarNode


def build(node: yaml.Node, memo: dict[int, Any] | None = None) -> Any:
    """Construct Python data from a node tree: PyYAML's safe constructor, only faster.

    Handles the core tags, merge keys and shared (aliased) nodes; rejects duplicate keys and
    values that do not fit their tag (:class:`_BadValue`). Anything unusual (explicit tags
    such as ``!!binary``, a float that is not finite) falls back to PyYAML's constructor.
    Plain strings, most of any document, are taken inline without a call per node.
    """
    if type(node) is _Scalar:
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag in _CORE:
            value = _core_scalar(node)
            if tag == _FLOAT and not math.isfinite(value):
                raise _Fallback()  # JSON has no NaN: the document is not plain
            return value
        raise _Fallback()
    if memo is not None and id(node) in memo:
        return memo[id(node)]
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _SEQ:
            raise _Fallback()
        out_list: list[Any] = []
        if memo is not None:
            memo[id(node)] = out_list
        for child in node.value:
            if type(child) is _Scalar and child.tag == _STR:
                out_list.append(child.value)
            else:
                out_list.append(build(child, memo))
        return out_list
    assert isinstance(node, yaml.MappingNode)
    if node.tag != _MAP:
        raise _Fallback()
    out: dict[Any, Any] = {}
    if memo is not None:
        memo[id(node)] = out
    merged: dict[Any, Any] | None = None
    for key_node, value_node in node.value:
        ktag = key_node.tag
        if ktag == _STR and type(key_node) is _Scalar:
            key = key_node.value
        elif ktag == _MERGE:
            merged = merged if merged is not None else {}
            value = build(value_node, memo)
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, dict):
                    raise _Fallback()
                for k, v in item.items():
                    merged.setdefault(k, v)
            continue
        else:
            key = build(key_node, memo)
            if isinstance(key, list | dict):
                raise _Fallback()
        if key in out:
            first = next(k for k, _ in node.value if k.tag != _MERGE and build(k) == key)
            raise _DuplicateKey(str(key), first.start_mark, key_node.start_mark)
        if type(value_node) is _Scalar and value_node.tag == _STR:
            out[key] = value_node.value
        else:
            out[key] = build(value_node, memo)
    if merged:
        for k, v in merged.items():
            out.setdefault(k, v)
    return out


class _Fallback(Exception):
    """The fast builder met something only PyYAML's constructor handles."""


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """One YAML document of a file: its data, its root node and its 0-based index.

    ``plain`` is True when the data holds only JSON's types (the fast builder made it: no tag
    beyond the core schema and no float that is NaN or infinite), so nobody needs to look.
    """

    index: int
    data: Any
    node: yaml.Node
    plain: bool = False


@dataclass(frozen=True, slots=True)
class ParsedFile:
    documents: tuple[ParsedDocument, ...]
    diagnostics: tuple[Diagnostic, ...]


def _diag(
    path: str, line: int, col: int, code: str, msg: str, hint: str | None = None
) -> Diagnostic:
    return Diagnostic(path, line, col, Severity.ERROR, code, msg, hint)


def _position_of_offset(data: bytes, offset: int) -> tuple[int, int]:
    before = data[:offset]
    line = before.count(b"\n") + 1
    col = offset - (before.rfind(b"\n") + 1) + 1
    return line, col


def too_large(path: str, size: int) -> Diagnostic:
    """The diagnostic of a file of ``size`` bytes, over :data:`MAX_FILE_BYTES`."""
    return _diag(
        path,
        1,
        1,
        "file-too-large",
        f"{size} bytes is over the limit of {MAX_FILE_BYTES} bytes for one YAML file",
        "split the documents over several files",
    )


def decode(path: str, data: bytes) -> tuple[str | None, Diagnostic | None]:
    """Decode a YAML file's bytes, or explain why they are not UTF-8 YAML text."""
    if len(data) > MAX_FILE_BYTES:
        return None, too_large(path, len(data))
    nul = data.find(b"\0")
    if nul >= 0:
        line, col = _position_of_offset(data, nul)
        return None, _diag(
            path,
            line,
            col,
            "file-binary",
            "the file holds binary data (a NUL byte), not YAML text",
            "add the path to Settings exclude if it is not meant to be read",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _position_of_offset(data, e.start)
        return None, _diag(
            path,
            line,
            col,
            "file-encoding",
            f"the file is not valid UTF-8 (byte 0x{data[e.start]:02x})",
            "save the file as UTF-8",
        )
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, None


def _yaml_error(path: str, text: str, err: yaml.MarkedYAMLError) -> Diagnostic:
    mark = err.problem_mark or err.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = err.problem or "invalid YAML"
    at = text[mark.index] if mark is not None and 0 <= mark.index < len(text) else ""
    if at == "\t" or "tab" in problem.lower():
        return _diag(
            path,
            line,
            col,
            "yaml-tab",
            "a tab character where YAML allows only spaces",
            "indent with spaces; YAML forbids tabs in indentation",
        )
    message = problem
    if err.context:
        message = f"{problem} ({err.context})"
    hint = None
    ctx = err.context_mark
    if ctx is not None and mark is not None and (ctx.line, ctx.column) != (mark.line, mark.column):
        what = (err.context or "construct").removeprefix("while parsing ")
        what = what.removeprefix("while scanning ").removeprefix("a ").removeprefix("an ")
        hint = f"check the {what} that starts at line {ctx.line + 1}, column {ctx.column + 1}"
    return _diag(path, line, col, "yaml-syntax", message, hint)


def _check_size(node: yaml.Node, path: str) -> Diagnostic | None:
    """Reject documents whose expanded size or depth is unbounded (alias bombs, recursion)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node, depth: int) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _Recursive(n)
        if depth > MAX_DEPTH:
            raise _TooDeep(n)
        total = 1
        if isinstance(n, yaml.SequenceNode):
            active.add(key)
            for child in n.value:
                total += size(child, depth + 1)
                if total > MAX_NODES:
                    raise _TooBig(n)
            active.discard(key)
        elif isinstance(n, yaml.MappingNode):
            active.add(key)
            for k, v in n.value:
                total += size(k, depth + 1) + size(v, depth + 1)
                if total > MAX_NODES:
                    raise _TooBig(n)
            active.discard(key)
        sizes[key] = total
        return total

    try:
        size(node, 0)
    except _NodeProblem as e:
        m = e.node.start_mark
        return _diag(path, m.line + 1, m.column + 1, e.code, e.message, e.hint)
    return None


class _NodeProblem(Exception):
    """A document that is too big or too deep to construct; carries its diagnostic."""

    code = "yaml-alias-limit"
    message = ""
    hint: str | None = None

    def __init__(self, node: yaml.Node) -> None:
        super().__init__()
        self.node = node


class _TooBig(_NodeProblem):
    message = f"the document expands to more than {MAX_NODES} nodes through anchors and aliases"
    hint = "anchors and aliases may not be used to build huge documents"


class _Recursive(_NodeProblem):
    message = "an alias refers to the node that contains it (a recursive structure)"


class _TooDeep(_NodeProblem):
    code = "yaml-too-deep"
    message = f"the document nests deeper than {MAX_DEPTH} levels"


_LINE_PREFIX = re.compile(r"^[ \t?-]*", re.M)


def _may_nest_deeper(text: str) -> bool:
    """A cheap upper bound on a document's nesting depth, compared with the limit.

    Along any path of block collections the column never decreases and grows at least every
    second level (a sequence may share its parent key's column), and every block collection
    starts within a line's prefix of spaces and ``-``/``?`` indicators; flow collections add
    at most one level per bracket. (Checking only for ``[[`` missed block nesting and
    ``[ [``.)
    """
    brackets = text.count("[") + text.count("{")
    if brackets > MAX_DEPTH:
        return True
    if text.count("\n") + 1 + brackets <= MAX_DEPTH:
        return False  # every level needs a line of its own or a bracket
    widest = max(map(len, _LINE_PREFIX.findall(text)), default=0)
    return 2 * (widest + 2) + brackets > MAX_DEPTH


def parse(path: str, data: bytes) -> ParsedFile:
    """Parse every document of one file; problems come back as diagnostics, never raised."""
    return _parse(path, data, Loader, fast=True)


def parse_ansible(path: str, data: bytes) -> ParsedFile:
    """:func:`parse` for a file that Ansible reads (an inventory): YAML 1.1 scalars, as
    Ansible sees them (``yes`` is true), with every limit of :func:`parse`."""
    return _parse(path, data, AnsibleLoader, fast=False)


def _parse(path: str, data: bytes, loader_class: type, fast: bool) -> ParsedFile:
    text, problem = decode(path, data)
    if problem is not None or text is None:
        return ParsedFile((), (problem,) if problem else ())
    # Walking the node graph costs time, so it runs only where an alias bomb or deep nesting
    # is possible at all: anchors, a large file, or a nesting bound over the limit.
    bounded_check = "&" in text or len(text) > 65536 or _may_nest_deeper(text)
    docs: list[ParsedDocument] = []
    loader = loader_class(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            if bounded_check:
                bad = _check_size(node, path)
                if bad is not None:
                    return ParsedFile(tuple(docs), (bad,))
            plain = fast
            try:
                if not fast:
                    raise _Fallback()
                data = build(node, {} if bounded_check else None)
            except _Fallback:  # a tag beyond the core schema (!!binary, !!set), NaN, .inf
                plain = False
                data = loader.construct_document(node)
            docs.append(ParsedDocument(index, data, node, plain))
            index += 1
    except _DuplicateKey as e:
        return ParsedFile(
            tuple(docs),
            (
                _diag(
                    path,
                    e.second.line + 1,
                    e.second.column + 1,
                    "yaml-duplicate-key",
                    f'duplicate key "{e.key}" (first at line {e.first.line + 1})',
                    "a key may appear once per mapping; remove or rename one",
                ),
            ),
        )
    except _BadValue as e:
        m = e.node.start_mark
        return ParsedFile(
            tuple(docs), (_diag(path, m.line + 1, m.column + 1, "yaml-value", e.message),)
        )
    except yaml.constructor.ConstructorError as e:
        # an unknown tag (!foo), a node of the wrong kind for its tag, an unhashable key
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"{e.problem} ({e.context})" if e.context else str(e.problem)
        return ParsedFile(tuple(docs), (_diag(path, line, col, "yaml-value", message),))
    except yaml.MarkedYAMLError as e:
        return ParsedFile(tuple(docs), (_yaml_error(path, text, e),))
    except yaml.reader.ReaderError as e:  # a character YAML does not allow, at an offset
        # libyaml counts the offset in UTF-8 bytes, PyYAML's own reader in characters
        if _C:
            before = text.encode()[: e.position].decode("utf-8", "replace")
        else:  # pragma: no cover - PyYAML built without libyaml
            before = text[: e.position]
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        char = e.character if isinstance(e.character, int) else ord(e.character)
        return ParsedFile(
            tuple(docs),
            (
                _diag(
                    path,
                    line,
                    col,
                    "yaml-syntax",
                    f"unacceptable character #x{char:04x}: {e.reason}",
                ),
            ),
        )
    except yaml.YAMLError as e:
        return ParsedFile(tuple(docs), (_diag(path, 1, 1, "yaml-syntax", str(e)),))
    except RecursionError:
        return ParsedFile(
            tuple(docs),
            (
                _diag(
                    path,
                    1,
                    1,
                    "yaml-too-deep",
                    f"the document nests deeper than {MAX_DEPTH} levels",
                ),
            ),
        )
    finally:
        loader.dispose()
    return ParsedFile(tuple(docs), ())


def without_json_form(
    data: Any, loc: tuple[str | int, ...] = ()
) -> tuple[tuple[str | int, ...], str] | None:
    """The first value in ``data`` that JSON cannot hold (documents and servers are stored as
    JSON): binary data (``!!binary``), NaN and the infinities. Where it is, and what it is.

    Only data that did not come from the fast builder can hold them
    (:attr:`ParsedDocument.plain`).
    """
    if isinstance(data, bytes):
        return loc, "binary data (!!binary)"
    if isinstance(data, float) and not math.isfinite(data):
        return loc, f"the number {data}"
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, bytes | float):
                found = without_json_form(key, (*loc, str(key)))
                if found is not None:
                    return found
            found = without_json_form(value, (*loc, key))
            if found is not None:
                return found
    elif isinstance(data, list | tuple | set | frozenset):
        for i, item in enumerate(data):
            found = without_json_form(item, (*loc, i))
            if found is not None:
                return found
    return None


def locate(node: yaml.Node, loc: Sequence[str | int], key: bool = False) -> tuple[int, int]:
    """1-based (line, column) of the node at ``loc`` below ``node``, as deep as it exists.

    With ``key=True`` the position of the last mapping *key* is returned (where an unknown
    field is written) rather than its value.
    """
    current = node
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    current = k if (key and last) else v
                    break
            else:
                break
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(current.value):
                current = current.value[part]
            else:
                break
        else:
            break
    return current.start_mark.line + 1, current.start_mark.column + 1
