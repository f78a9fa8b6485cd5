"""Golden plans: two revisions of a repository in, the plan between the state and the second
one out, rendered as ``reconciler plan`` prints it (no colour), on SQLite and on PostgreSQL
(the two must print the same plan).

Each folder ``golden/<case>/`` holds:

- ``before/``: files laid over a copy of ``golden/_base`` for the first revision, which is
  applied (with ``"apply_before": false`` in case.json nothing is applied: the state is empty);
- ``after/``: files laid over the first revision for the second one, which is planned;
- ``case.json`` (optional): ``now`` (ISO instant, default 2025-10-24T12:00:00+00:00),
  ``delete_before`` / ``delete_after`` (paths to remove), ``apply_before``, ``unmanaged``
  (objects written to the state as created by someone else: ``[{"kind", "name"}]``);
- ``expected.txt``: the text plan, then ``summary:`` and ``detailed-exitcode:``.

Run ``pytest tests/planning/test_golden_plans.py --update-golden`` to rewrite the expected
files, then read the diff before committing it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli.render_plan import plan_lines
from reconciler.stores import ObjectWrite, StateStore

from .conftest import GOLDEN, NOW, GitRepo, apply_repo, plan_repo

CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and not p.name.startswith("_"))


def _spec(case_dir: Path) -> dict[str, Any]:
    f = case_dir / "case.json"
    return json.loads(f.read_text()) if f.exists() else {}


def _unmanaged(store: StateStore, items: list[dict[str, str]], now: datetime) -> None:
    """Write ``items`` as someone else would, keeping the applied revision where it is."""
    if not items:
        return
    writes = []
    for item in items:
        body = json.dumps(
            {
                "apiVersion": "reconciler/v1",
                "kind": item["kind"],
                "metadata": {"name": item["name"]},
                "spec": {
                    "template": "backup",
                    "owner": "alice",
                    "when": {"daily": {"at": "05:00"}},
                },
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(body.encode()).hexdigest()
        writes.append(ObjectWrite(item["kind"], item["name"], digest, body, False, "active"))
    info = store.info()
    store.apply_changes(info.serial, info.revision, writes, [], now, "created outside Git")


def render_case(case: str, tmp_path: Path, store: StateStore) -> str:
    case_dir = GOLDEN / case
    spec = _spec(case_dir)
    now = datetime.fromisoformat(spec["now"]) if "now" in spec else NOW
    repo = GitRepo(tmp_path / "repo")
    repo.copy_in(GOLDEN / "_base")
    for rel in spec.get("delete_before", []):
        repo.remove(rel)
    if (case_dir / "before").is_dir():
        repo.copy_in(case_dir / "before")
    repo.commit("before")
    if spec.get("apply_before", True):
        apply_repo(store, repo, now=now)
    _unmanaged(store, spec.get("unmanaged", []), now)
    for rel in spec.get("delete_after", []):
        repo.remove(rel)
    if (case_dir / "after").is_dir():
        repo.copy_in(case_dir / "after")
    repo.commit("after")
    plan = plan_repo(store, repo, now=now)
    lines = plan_lines(plan, False, "repo")
    summary = json.dumps(plan.to_json()["summary"])
    return "\n".join(
        [*lines, f"summary: {summary}", f"detailed-exitcode: {0 if plan.empty else 2}"]
    )


@pytest.mark.parametrize("case", CASES)
def test_plan_golden(case: str, tmp_path: Path, store: StateStore, update_golden: bool) -> None:
    actual = render_case(case, tmp_path, store) + "\n"
    expected_file = GOLDEN / case / "expected.txt"
    if update_golden:
        expected_file.write_text(actual)
        return
    assert expected_file.exists(), f"no expected.txt; run pytest with --update-golden ({case})"
    assert actual == expected_file.read_text()


def test_every_golden_plan_case_has_an_expected_file_and_changes_something() -> None:
    for case in CASES:
        case_dir = GOLDEN / case
        assert (case_dir / "expected.txt").is_file(), case
        assert any((case_dir / p).exists() for p in ("before", "after", "case.json")), case
