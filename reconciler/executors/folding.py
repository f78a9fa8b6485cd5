"""Fold runner events into host results, drift and simulation findings. Pure.

Input: the events the worker emits (one dict per runner event, slimmed and redacted, see
:func:`reconciler.executors.worker.slim_event`). Output: :class:`PhaseResult` for one
ansible-playbook invocation, and :func:`drift_summary` across the phases of a configuration run.

Rules (measured on ansible-core 2.19, see the research notes):

- counts come from ``playbook_on_stats`` (the authoritative per-host numbers, also for
  ``no_log`` tasks whose events lose ``changed``); without it (cancelled, timed out) they are
  counted from the task events seen;
- a host's status is the worst of unreachable > failed > changed > ok > skipped; a host that
  never appears in any event is ``skipped`` with the message "not run";
- in check mode a host is drifted when it has changes; a failed or unreachable host has an
  unknown drift (``None``), never "in sync";
- drift details come from ``runner_on_ok`` (``res.diff``, or ``res.results[i].diff`` for
  loops); censored (``no_log``) results become a hidden diff;
- in check mode, a ``command``/``shell``/``script``/``raw``/``expect`` task that is skipped
  cannot be simulated, and one that returned a result ran for real (``check_mode: false`` or
  ``creates``/``removes``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.executors.spec import (
    DriftOutcome,
    HostOutcome,
    HostStatus,
    SimulationFinding,
    TaskDiff,
)

COMMAND_ACTIONS = frozenset({"command", "shell", "script", "raw", "expect"})
DIFF_CAP = 4000
_PREFIXES = ("ansible.builtin.", "ansible.legacy.", "community.general.")


def short_action(action: str | None) -> str:
    name = action or ""
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


@dataclass
class _Acc:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    seen: bool = False
    message: str = ""
    diffs: list[TaskDiff] = field(default_factory=list)


@dataclass(frozen=True)
class PhaseResult:
    """What one ansible-playbook invocation did: per-host results, findings, error text."""

    hosts: Mapping[str, HostOutcome]
    findings: tuple[SimulationFinding, ...] = ()
    error: str = ""
    stats_seen: bool = False

    def changed_hosts(self) -> list[str]:
        return [h.name for h in self.hosts.values() if h.drifted]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def render_diff(entry: Mapping[str, Any]) -> TaskDiff:
    """One ``res.diff`` entry as a :class:`TaskDiff` with a capped unified diff."""
    before, after = _text(entry.get("before")), _text(entry.get("after"))
    bh = entry.get("before_header")
    ah = entry.get("after_header")
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=str(bh) if bh is not None else "before",
        tofile=str(ah) if ah is not None else "after",
    )
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    if not text and entry.get("prepared"):
        text = _text(entry.get("prepared"))
    if len(text) > DIFF_CAP:
        text = text[:DIFF_CAP] + "\n[diff truncated]\n"
    return TaskDiff(
        task="",
        before_header=str(bh) if bh is not None else None,
        after_header=str(ah) if ah is not None else None,
        diff=text,
    )


def _diffs_of(task: str, res: Mapping[str, Any], stdout: str) -> list[TaskDiff]:
    if "censored" in res:
        if res.get("changed") or stdout.lstrip().startswith("changed:"):
            return [TaskDiff(task=task, hidden=True)]
        return []
    results = res.get("results")
    sources: list[Mapping[str, Any]] = []
    if isinstance(results, list):
        sources = [r for r in results if isinstance(r, dict) and r.get("changed")]
    elif res.get("changed"):
        sources = [res]
    out: list[TaskDiff] = []
    for src in sources:
        if "censored" in src:
            out.append(TaskDiff(task=task, hidden=True))
            continue
        raw = src.get("diff")
        entries = raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else []
        rendered = [replace(render_diff(e), task=task) for e in entries if isinstance(e, dict)]
        out.extend(rendered or [TaskDiff(task=task)])
    return out


def _first_line(text: str) -> str:
    for line in text.replace("\r", "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _status(acc: _Acc) -> HostStatus:
    if acc.unreachable:
        return "unreachable"
    if acc.failed:
        return "failed"
    if acc.changed:
        return "changed"
    if acc.ok:
        return "ok"
    return "skipped"


def error_text(events: Iterable[Mapping[str, Any]]) -> str:
    """The error lines ansible-playbook printed outside task results (syntax errors ...)."""
    lines: list[str] = []
    for ev in events:
        if ev.get("event") in ("verbose", "error", "warning") or not ev.get("event"):
            text = str(ev.get("stdout") or "").replace("\r", "")
            for line in text.splitlines():
                if "ERROR" in line or (lines and line.strip()):
                    lines.append(line.rstrip())
    return "\n".join(lines[:20]).strip()


def fold_events(
    events: Iterable[Mapping[str, Any]], hosts: Sequence[str], *, check: bool
) -> PhaseResult:
    """Fold one invocation's events (in order) into per-host results for ``hosts``."""
    events = list(events)
    acc: dict[str, _Acc] = {h: _Acc() for h in hosts}
    findings: dict[tuple[str, str, str | None], SimulationFinding] = {}
    stats: Mapping[str, Any] | None = None
    for ev in events:
        kind = ev.get("event")
        if kind == "playbook_on_stats":
            stats = ev
            continue
        host = ev.get("host")
        if not isinstance(host, str) or not str(kind).startswith("runner_on_"):
            continue
        if kind == "runner_on_start":
            continue
        a = acc.setdefault(host, _Acc())
        a.seen = True
        task = str(ev.get("task") or "")
        res = ev.get("res") if isinstance(ev.get("res"), dict) else {}
        assert isinstance(res, dict)
        stdout = str(ev.get("stdout") or "")
        action = short_action(ev.get("task_action"))
        if kind == "runner_on_ok":
            a.ok += 1
            if res.get("changed") or ("censored" in res and stdout.startswith("changed:")):
                a.changed += 1
            a.diffs.extend(_diffs_of(task, res, stdout))
        elif kind == "runner_on_failed":
            if ev.get("ignore_errors"):
                a.ok += 1
            else:
                a.failed += 1
                if not a.message:
                    msg = res.get("msg") or _first_line(stdout)
                    a.message = f"task {task!r} failed: {msg}"
        elif kind == "runner_on_unreachable":
            a.unreachable += 1
            if not a.message:
                a.message = f"unreachable: {res.get('msg') or _first_line(stdout)}"
        elif kind == "runner_on_skipped":
            a.skipped += 1
        if check and action in COMMAND_ACTIONS:
            if kind == "runner_on_skipped":
                key = ("cannot-simulate", task, host)
                findings[key] = SimulationFinding(
                    "cannot-simulate",
                    task,
                    host,
                    f"{action} tasks are skipped in check mode: what they would do is unknown",
                )
            elif kind in ("runner_on_ok", "runner_on_failed"):
                key = ("runs-for-real", task, host)
                findings[key] = SimulationFinding(
                    "runs-for-real",
                    task,
                    host,
                    f"this {action} task ran for real during check mode "
                    "(check_mode: false, or creates/removes)",
                )
    if stats is not None:
        for stat_key, attr in (
            ("ok", "ok"),
            ("changed", "changed"),
            ("failures", "failed"),
            ("dark", "unreachable"),
            ("skipped", "skipped"),
        ):
            per_host = stats.get(stat_key) or {}
            for host, a in acc.items():
                setattr(a, attr, int(per_host.get(host, 0)))
                if per_host.get(host):
                    a.seen = True
    results: dict[str, HostOutcome] = {}
    for host, a in acc.items():
        status = _status(a) if a.seen else "skipped"
        drifted: bool | None = None
        if check and a.seen and status not in ("failed", "unreachable"):
            drifted = a.changed > 0
        results[host] = HostOutcome(
            name=host,
            status=status,
            ok=a.ok,
            changed=a.changed,
            failed=a.failed,
            unreachable=a.unreachable,
            skipped=a.skipped,
            drifted=drifted,
            drift=tuple(a.diffs) if check else (),
            message=a.message if a.seen else "not run",
        )
    return PhaseResult(
        hosts=results,
        findings=tuple(findings.values()),
        error=error_text(events),
        stats_seen=stats is not None,
    )


def drift_summary(
    check: PhaseResult,
    remediation: PhaseResult | None = None,
    recheck: PhaseResult | None = None,
) -> dict[str, DriftOutcome]:
    """Per host: in-sync, found, fixed, still-present or unknown (see ``spec.DriftOutcome``)."""
    out: dict[str, DriftOutcome] = {}
    for name, host in check.hosts.items():
        if host.drifted is None:
            out[name] = "unknown"
        elif not host.drifted:
            out[name] = "in-sync"
        elif remediation is None or name not in remediation.hosts:
            out[name] = "found"
        else:
            applied = remediation.hosts[name]
            if applied.status in ("failed", "unreachable", "skipped"):
                out[name] = "still-present"
            elif recheck is not None and name in recheck.hosts:
                again = recheck.hosts[name]
                if again.drifted is None:
                    out[name] = "unknown"
                else:
                    out[name] = "still-present" if again.drifted else "fixed"
            else:
                out[name] = "fixed"
    return out


def merge_host(check: HostOutcome, applied: HostOutcome | None) -> HostOutcome:
    """A configuration run's host result: the check's drift, the remediation's counts."""
    if applied is None:
        return check
    return replace(
        applied,
        drifted=check.drifted,
        drift=check.drift,
        message=applied.message or check.message,
    )


def combine_status(results: Iterable[HostOutcome]) -> bool:
    """True when no host failed or was unreachable."""
    return all(h.status not in ("failed", "unreachable") for h in results)
