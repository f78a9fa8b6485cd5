"""From parsed YAML to typed documents: envelope checks and schema validation. Pure.

Errors from pydantic are turned into positioned diagnostics that name the object and the field
at fault, with a "did you mean" hint for misspelt field names.
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from reconciler.loading.yamlparse import ParsedDocument, locate, without_json_form
from reconciler.model.common import API_GROUP_PREFIX, API_VERSION
from reconciler.model.diagnostics import CODES, Diagnostic, Severity, did_you_mean
from reconciler.model.documents import KINDS, AnyDocument

Loc = Sequence[str | int]


class LoadedDocument:
    """A valid document: where it is, its canonical JSON body and digest, its model.

    The model is built lazily from the canonical body, so documents that come from the parse
    cache cost nothing until something needs their fields.
    """

    __slots__ = ("_doc", "body", "digest", "index", "kind", "line", "name", "path")

    def __init__(
        self,
        kind: str,
        name: str,
        path: str,
        index: int,
        line: int,
        body: bytes,
        digest: str,
        doc: AnyDocument | None = None,
    ) -> None:
        self.kind, self.name, self.path, self.index, self.line = kind, name, path, index, line
        self.body, self.digest, self._doc = body, digest, doc

    @classmethod
    def from_model(cls, doc: AnyDocument, path: str, index: int, line: int) -> LoadedDocument:
        body = canonical_json(doc)
        return cls(doc.kind, doc.name, path, index, line, body, digest(body), doc)

    @property
    def doc(self) -> AnyDocument:
        if self._doc is None:
            self._doc = KINDS[self.kind].model_validate_json(self.body)
        return self._doc

    def at(self, path: str) -> LoadedDocument:
        """The same document found under another path (same blob, other file)."""
        if path == self.path:
            return self
        return LoadedDocument(
            self.kind, self.name, path, self.index, self.line, self.body, self.digest, self._doc
        )

    def to_tuple(self) -> tuple[str, str, int, int, bytes, str]:
        return (self.kind, self.name, self.index, self.line, self.body, self.digest)

    @classmethod
    def from_tuple(cls, path: str, t: tuple[str, str, int, int, bytes, str]) -> LoadedDocument:
        kind, name, index, line, body, dig = t
        return cls(kind, name, path, index, line, body, dig)

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name!r} at {self.path}:{self.line}>"


def canonical_json(doc: AnyDocument) -> bytes:
    """The document as compact JSON with defaults filled in: what its digest covers.

    Fields come in model order; mappings written by the user (labels, variables, vars) keep
    the user's order, so planning compares bodies as data, not as bytes, before it calls a
    changed digest a change.
    """
    return doc.model_dump_json(by_alias=True).encode()


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _label(kind: str, raw: dict[str, Any]) -> str:
    meta = raw.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f'{kind} "{name}"' if isinstance(name, str) and name else kind


def _aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through Optional, list, dict, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, dict, tuple):
        for arg in typing.get_args(annotation):
            out.extend(_models_in(arg))
    return out


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that owns the mapping at ``loc`` (used to suggest field names)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            # a dict key such as a role name: stay on the value model of the dict
            continue
        candidates = _models_in(field.annotation)
        current = candidates[0] if candidates else None
    return current


def _dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_loc(loc: Sequence[Any], data: Any) -> tuple[str | int, ...]:
    """Drop pydantic's union/validator tags from a loc, keeping only real YAML keys."""
    out: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            out.append(part)
            current = current[part]
        elif isinstance(current, dict) and isinstance(part, str) and i == len(loc) - 1:
            out.append(part)  # a missing or unknown key: keep it for the message
            current = None
        # else: a tag such as 'int' or "literal['last']": skip it
    return tuple(out)


def _message(err: Any) -> str:
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    # "should be a valid boolean, unable to interpret input": the value is shown instead
    return msg.split(", unable to ")[0]


def _given(errs: list[Any]) -> str:
    """``, not "maybe"``: the scalar value the user wrote, for type and choice errors."""
    value = errs[0].get("input")
    if isinstance(value, bool | int | float | str) and not isinstance(value, type):
        text = json.dumps(value)
        return f", not {text[:60]}{'...' if len(text) > 60 else ''}"
    return ""


def _yaml_type(value: Any) -> str:
    """What a YAML value is, in the words of YAML: mapping, sequence, integer, ..."""
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list | tuple | set):
        return "sequence"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _value_at(data: Any, loc: Sequence[str | int]) -> Any:
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_dict or in_list):
            return None
        data = data[part]
    return data


def _fields_hint(owner: type[BaseModel] | None) -> str | None:
    return "fields: " + ", ".join(_aliases(owner)) if owner else None


NAME_REQUIRED = "metadata.name is required"


def _name_missing(model: type[BaseModel], raw: dict[str, Any]) -> bool:
    """A kind that needs metadata.name, in a document that does not give one."""
    if model.__name__ == "Settings":
        return False
    meta = raw.get("metadata")
    if meta is None:
        return True
    return isinstance(meta, dict) and meta.get("name") in (None, "")


def validation_diagnostics(
    err: ValidationError,
    model: type[BaseModel],
    kind: str,
    raw: dict[str, Any],
    pd: ParsedDocument,
    path: str,
) -> list[Diagnostic]:
    label = _label(kind, raw)
    grouped: dict[tuple[str | int, ...], list[Any]] = {}
    for e in err.errors():
        if _message(e) == NAME_REQUIRED:
            continue  # reported by load_document before validation, at metadata
        loc = _clean_loc(e["loc"], raw)
        grouped.setdefault(loc, []).append(e)
    out: list[Diagnostic] = []
    # A misspelt field gives both "unknown field ownr" and "owner is required"; the first,
    # with its "did you mean", says it all.
    suggested: set[tuple[str | int, ...]] = set()
    for loc, errs in grouped.items():
        if any(e["type"] == "extra_forbidden" for e in errs):
            owner = _model_at(model, loc[:-1])
            close = did_you_mean(str(loc[-1]), _aliases(owner)) if owner else None
            if close:
                suggested.add((*loc[:-1], close.split('"')[1]))
    for loc, errs in grouped.items():
        types_ = {e["type"] for e in errs}
        where = _dotted(loc) or "document"
        if "extra_forbidden" in types_:
            name = str(loc[-1])
            owner = _model_at(model, loc[:-1])
            hint = (did_you_mean(name, _aliases(owner)) if owner else None) or _fields_hint(owner)
            line, col = locate(pd.node, loc, key=True)
            out.append(
                Diagnostic(
                    path,
                    line,
                    col,
                    Severity.ERROR,
                    "field-unknown",
                    f'{label}: unknown field "{name}" in {_dotted(loc[:-1]) or "document"}',
                    hint,
                )
            )
            continue
        if "missing" in types_:
            if loc in suggested:
                continue
            # at the key of the mapping that lacks the field (``spec:``), not inside it
            line, col = locate(pd.node, loc[:-1], key=True)
            out.append(
                Diagnostic(
                    path,
                    line,
                    col,
                    Severity.ERROR,
                    "field-missing",
                    f"{label}: {where} is required",
                )
            )
            continue
        # a problem with a whole mapping (such as when: with two forms) is shown at its key
        line, col = locate(pd.node, loc, key=isinstance(_value_at(raw, loc), dict))
        msgs = list(dict.fromkeys(_message(e) for e in errs))
        if all(m.startswith("Input should be ") for m in msgs):
            msgs = ["should be " + " or ".join(m[len("Input should be ") :] for m in msgs)]
            msgs[0] += _given(errs)
        custom = [e["type"] for e in errs if e["type"] in CODES]
        code = custom[0] if custom else "field-invalid"
        if code == "field-invalid" and loc == ("metadata", "name"):
            code = "name-invalid"
        out.append(
            Diagnostic(
                path, line, col, Severity.ERROR, code, f"{label}: {where}: {' or '.join(msgs)}"
            )
        )
    if _name_missing(model, raw):
        has_meta = isinstance(raw.get("metadata"), dict)
        line, col = locate(pd.node, ("metadata",) if has_meta else (), key=True)
        out.append(
            Diagnostic(
                path, line, col, Severity.ERROR, "field-missing", f"{label}: {NAME_REQUIRED}"
            )
        )
    return out


def _at(
    pd: ParsedDocument, path: str, loc: Loc, sev: Severity, code: str, msg: str, hint: str | None
) -> list[Diagnostic]:
    line, col = locate(pd.node, loc)
    return [Diagnostic(path, line, col, sev, code, msg, hint)]


def load_document(pd: ParsedDocument, path: str) -> tuple[LoadedDocument | None, list[Diagnostic]]:
    """Validate one parsed document. Documents that are not ours give (None, [])."""
    raw = pd.data
    line = pd.node.start_mark.line + 1
    if not isinstance(raw, dict):
        return None, []
    api = raw.get("apiVersion")
    kind = raw.get("kind")
    err = Severity.ERROR
    if not isinstance(api, str) or not api.startswith(API_GROUP_PREFIX):
        if api is None and isinstance(kind, str) and kind in KINDS and "spec" in raw:
            msg = f"{_label(kind, raw)}: a document without apiVersion is ignored"
            hint = f"add apiVersion: {API_VERSION}"
            return None, _at(pd, path, (), Severity.WARNING, "api-version", msg, hint)
        return None, []
    if api != API_VERSION:
        msg = f'{_label(str(kind or "document"), raw)}: unknown apiVersion "{api}"'
        hint = f"the only version is {API_VERSION}"
        return None, _at(pd, path, ("apiVersion",), err, "api-version", msg, hint)
    kinds = "kinds: " + ", ".join(KINDS)
    if kind is None:
        named = _label("document", raw)
        msg = f"{named} has no kind" if named != "document" else "the document has no kind"
        return None, _at(pd, path, (), err, "kind-unknown", msg, kinds)
    if not isinstance(kind, str) or kind not in KINDS:
        named = _label("document", raw)
        if isinstance(kind, str):
            hint = did_you_mean(kind, KINDS) or kinds
            what = f'unknown kind "{kind}"'
        else:  # a list or mapping (unhashable), a number: say what it is, not its repr
            hint = kinds
            what = f"kind must be a name such as Schedule, not a {_yaml_type(kind)}"
        msg = (f"{named}: " if named != "document" else "") + what
        return None, _at(pd, path, ("kind",), err, "kind-unknown", msg, hint)
    model = KINDS[kind]
    odd = None if pd.plain else without_json_form(raw)
    if odd is not None:
        loc, what = odd
        msg = (
            f"{_label(kind, raw)}: {_dotted(loc)}: {what} has no JSON form, so it cannot be stored"
        )
        return None, _at(pd, path, loc, err, "field-invalid", msg, "write it as a string instead")
    try:
        doc = model.model_validate(raw)
    except ValidationError as e:
        return None, validation_diagnostics(e, model, kind, raw, pd, path)
    return LoadedDocument.from_model(doc, path, pd.index, line), []


def rejected_identity(pd: ParsedDocument) -> tuple[str, str] | None:
    """(kind, name) of one of our documents that failed validation ("" when unnamed).

    The cross-document checks use it so that a reference to an invalid document is not
    reported a second time as a reference to a document that does not exist.
    """
    raw = pd.data
    if not isinstance(raw, dict):
        return None
    api, kind = raw.get("apiVersion"), raw.get("kind")
    if not isinstance(api, str) or not api.startswith(API_GROUP_PREFIX):
        return None
    if not isinstance(kind, str) or kind not in KINDS:
        return None
    meta = raw.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return str(kind), name if isinstance(name, str) else ""
