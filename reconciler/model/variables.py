"""Variable values: merging, type checks and choices, shared by schedules, the CLI and the API.

Pure. Values are merged in order: template defaults, then schedule values (from Git), then
caller values (CLI ``--var`` or the API). Git values are trusted; caller values are data that
Ansible must never template (the executor marks them ``!unsafe``). Sensitive values are never
literals in Git: a schedule gives them as ``{valueFrom: ...}`` and they are resolved at run time.

``!unsafe`` stops Jinja, not Ansible itself: a caller value named ``ansible_connection`` or
``ansible_ssh_common_args`` is read by the connection plugin as an option (a ``ProxyCommand``
runs on the controller). So a caller value may never name one of Ansible's own variables,
whatever ``allowNewVariables`` says: :func:`reserved_name` is that rule, and the loader applies
it to template prompts too, since callers give prompts their values.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model.common import SecretRef
from reconciler.model.diagnostics import did_you_mean
from reconciler.model.schedule import secret_ref
from reconciler.model.template import JobTemplateSpec, VariablePrompt

#: Variables that ansible-core (2.19) sets itself for every host and task, beside the
#: ``ansible_*`` ones (refused by prefix): a value of the same name would replace Ansible's.
MAGIC_VARIABLES = frozenset(
    {
        "environment",
        "group_names",
        "groups",
        "hostvars",
        "inventory_dir",
        "inventory_file",
        "inventory_hostname",
        "inventory_hostname_short",
        "omit",
        "play_hosts",
        "playbook_dir",
        "role_name",
        "role_names",
        "role_path",
        "role_uuid",
        "vars",
    }
)

#: Names that templates give a meaning: the globals of Ansible's Jinja environment, which a
#: variable would shadow, and the names Jinja itself reserves (constants, loop and macro names).
TEMPLATE_NAMES = frozenset(
    {
        # Ansible's template globals
        "cycler",
        "dict",
        "joiner",
        "lipsum",
        "lookup",
        "namespace",
        "now",
        "omit",
        "q",
        "query",
        "range",
        "undef",
        # Jinja
        "true",
        "false",
        "none",
        "loop",
        "self",
        "super",
        "caller",
        "varargs",
        "kwargs",
    }
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def reserved_name(name: str) -> str | None:
    """Why a value from outside Git may not have this name, or None when it may.

    A name must be a plain ASCII identifier, and not one of Ansible's own: ``ansible_*`` in any
    case (connection, privilege escalation, interpreter, facts), ``_*`` (Ansible's internals),
    a magic variable, a name of Ansible's templates or Jinja, or a Python keyword. Playbook
    keywords (``name``, ``port``, ``strategy``...) are not refused: Ansible never reads them
    from variables.
    """
    if not _IDENTIFIER.fullmatch(name):
        return (
            "it is not a plain identifier (ASCII letters, digits and _, not starting with a digit)"
        )
    if name.lower().startswith("ansible_"):
        return (
            "names beginning with ansible_ are Ansible's own "
            "(connection, privilege escalation, interpreter, facts)"
        )
    if name.startswith("_"):
        return "names beginning with _ are Ansible's internal variables"
    if name in MAGIC_VARIABLES:
        return "it is a magic variable that Ansible sets itself"
    if name in TEMPLATE_NAMES:
        return "it has a meaning of its own in Ansible's templates"
    if keyword.iskeyword(name):
        return "it is a Python keyword"
    return None


def _shown(name: str) -> str:
    """A name as a message shows it: quoted, with control characters escaped."""
    return json.dumps(name, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class VariableProblem:
    """One problem with a variable value; ``code`` is a diagnostic code (``var-*``)."""

    code: str
    name: str
    message: str
    hint: str | None = None


@dataclass
class ResolvedVariables:
    """The merged values of one run, split by trust. Secrets are references, not values."""

    trusted: dict[str, Any] = field(default_factory=dict)
    untrusted: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, SecretRef] = field(default_factory=dict)
    #: sensitive values typed by a caller: used for the run, never stored or logged
    secret_values: dict[str, Any] = field(default_factory=dict)
    problems: list[VariableProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def public(self) -> dict[str, Any]:
        """Values safe to store and show: everything but the secrets."""
        return {**self.trusted, **self.untrusted}


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "mapping"
    return "null" if v is None else type(v).__name__


def check_value(prompt: VariablePrompt, value: Any) -> VariableProblem | None:
    """Whether ``value`` fits the prompt's type and choices."""
    t = prompt.type
    ok = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float)
        and not isinstance(value, bool)
        and (isinstance(value, int) or math.isfinite(value)),  # an int may be past a float
        "boolean": isinstance(value, bool),
        "list": isinstance(value, list),
        "choice": True,
    }[t]
    if not ok:
        return VariableProblem(
            "var-type",
            prompt.name,
            f'variable "{prompt.name}" must be {"an" if t == "integer" else "a"} {t}, '
            f"not {_type_name(value)} {json.dumps(value, default=str)[:60]}",
        )
    if t == "choice" and prompt.choices is not None and value not in prompt.choices:
        allowed = ", ".join(json.dumps(c) for c in prompt.choices)
        given = json.dumps(value, default=str)
        return VariableProblem(
            "var-choice",
            prompt.name,
            f'variable "{prompt.name}" must be one of {allowed}, not {given}',
        )
    return None


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def coerce_text(prompt: VariablePrompt | None, text: str) -> Any:
    """Turn a value typed as text (``--var k=v``, a query parameter) into the prompt's type.

    A value that cannot be converted is returned unchanged, so :func:`check_value` reports it.
    """
    if prompt is None or prompt.type == "string":
        return text
    t = prompt.type
    try:
        if t == "integer":
            return int(text, 10)
        if t == "number":
            return float(text) if any(ch in text for ch in ".eE") else int(text, 10)
        if t == "boolean":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            return text
        if t == "list":
            value = (
                json.loads(text)
                if text.startswith("[")
                else [p.strip() for p in text.split(",") if p.strip()]
            )
            return value
        if t == "choice" and prompt.choices is not None:
            for c in prompt.choices:
                if str(c) == text:
                    return c
    except ValueError:
        return text
    return text


def resolve(
    template: JobTemplateSpec,
    schedule_values: Mapping[str, Any] | None = None,
    caller_values: Mapping[str, Any] | None = None,
) -> ResolvedVariables:
    """Merge defaults, schedule values and caller values; check every one of them."""
    out = ResolvedVariables()
    declared = {p.name: p for p in template.variables}
    for p in template.variables:
        if p.default is not None:
            out.trusted[p.name] = p.default
    for source, values in (("schedule", schedule_values or {}), ("caller", caller_values or {})):
        for name, value in values.items():
            why = reserved_name(name) if source == "caller" else None
            if why is not None:
                out.problems.append(
                    VariableProblem(
                        "var-reserved",
                        name,
                        f"variable {_shown(name)} cannot come from outside Git: {why}",
                    )
                )
                continue
            prompt = declared.get(name)
            if prompt is None and not template.allow_new_variables:
                out.problems.append(
                    VariableProblem(
                        "var-unknown",
                        name,
                        f'unknown variable "{name}"',
                        did_you_mean(name, declared)
                        or (
                            "declared variables: " + ", ".join(declared)
                            if declared
                            else "the template declares no variables (allowNewVariables is false)"
                        ),
                    )
                )
                continue
            ref = secret_ref(value)
            if ref is not None:
                if source == "caller":
                    out.problems.append(
                        VariableProblem(
                            "var-type", name, f'variable "{name}": valueFrom is only allowed in Git'
                        )
                    )
                    continue
                out.trusted.pop(name, None)
                out.untrusted.pop(name, None)
                out.secrets[name] = ref
                continue
            if prompt is not None and prompt.sensitive and source == "schedule":
                out.problems.append(
                    VariableProblem(
                        "var-secret-literal",
                        name,
                        f'variable "{name}" is sensitive and must not be a literal in Git',
                        "use {valueFrom: {env: NAME}} or {valueFrom: {file: PATH}}",
                    )
                )
                continue
            if prompt is not None:
                problem = check_value(prompt, value)
                if problem is not None:
                    out.problems.append(problem)
                    continue
            out.secrets.pop(name, None)
            if prompt is not None and prompt.sensitive:
                out.trusted.pop(name, None)
                out.secret_values[name] = value
            elif source == "caller":
                out.trusted.pop(name, None)
                out.untrusted[name] = value
            else:
                out.trusted[name] = value
    # a value given with a problem is reported once, as that problem, not also as missing
    reported = {problem.name for problem in out.problems}
    for p in template.variables:
        given = (out.trusted, out.untrusted, out.secrets, out.secret_values)
        if p.name in reported:
            continue
        if p.required and not any(p.name in values for values in given):
            out.problems.append(
                VariableProblem(
                    "var-missing",
                    p.name,
                    f'required variable "{p.name}" has no value',
                    f"give it in the schedule's variables{' with valueFrom' if p.sensitive else ''}"
                    " or as a default in the template",
                )
            )
    return out
