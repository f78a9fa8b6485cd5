"""Helpers of the metrics and health tests: plain HTTP requests to a ``serve`` on 127.0.0.1,
error objects, and Prometheus expositions parsed into samples."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.conftest import write_repo
from tests.gitutil import git

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def http(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """GET ``url``: (status, content type, body), also for an error status."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("content-type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode()


def error_code(body: str) -> str:
    """The ``code`` of an error answer (``{"error": {"code", "message"}}``)."""
    data = json.loads(body)
    assert set(data) == {"error"} and set(data["error"]) == {"code", "message"}, data
    return str(data["error"]["code"])


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def git_repo(root: Path, schedules: dict[str, str], extra: dict[str, str]) -> Path:
    write_repo(root, schedules, extra)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    return root


def soon(seconds: float) -> str:
    """An instant ``seconds`` from now, whole seconds, as an ``end:`` of a ``when``."""
    t = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)
    return t.isoformat()
