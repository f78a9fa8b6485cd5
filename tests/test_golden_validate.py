"""Golden tests of ``reconciler validate``: a repository in, the diagnostics out.

Each folder ``tests/golden/validate/<case>/`` holds:

- ``repo/``: files laid over a copy of ``_base/`` (a minimal valid repository); a file of the
  case replaces the base file of the same path;
- ``case.json`` (optional): ``delete`` (base files to remove), ``args`` (extra CLI arguments),
  ``base`` (``"example-repo"`` to start from the project's example repository instead),
  ``symlinks`` (``{path: target}``) and ``generate`` (``{path: {"text": ..., "repeat": N,
  "encoding": "utf-8"}}``, for huge, binary or non-UTF-8 files that should not be committed);
- ``expected.txt``: ``exit: N`` then exactly what ``validate`` prints on stdout (text format).

Run ``pytest tests/test_golden_validate.py --update-golden`` to rewrite the expected files,
then read the diff before committing it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "validate"
BASE = GOLDEN / "_base"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and not p.name.startswith("_"))


def build_repo(case_dir: Path, dest: Path) -> dict[str, Any]:
    """Lay the case over a copy of its base repository in ``dest``; returns case.json."""
    spec_file = case_dir / "case.json"
    spec: dict[str, Any] = json.loads(spec_file.read_text()) if spec_file.exists() else {}
    base = ROOT / spec["base"] if "base" in spec else BASE
    shutil.copytree(base, dest, symlinks=True)
    for rel in spec.get("delete", []):
        target = dest / rel
        assert target.exists(), f"case.json deletes {rel}, which the base does not have"
        target.unlink()
    overlay = case_dir / "repo"
    if overlay.is_dir():
        shutil.copytree(overlay, dest, symlinks=True, dirs_exist_ok=True)
    for rel, gen in spec.get("generate", {}).items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = gen.get("head", "") + gen["text"] * gen.get("repeat", 1)
        target.write_bytes(text.encode(gen.get("encoding", "utf-8")))
    for rel, link_target in spec.get("symlinks", {}).items():
        link = dest / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link_target, link)
    return spec


def run_validate(repo: Path, args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["validate", str(repo), *args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("case", CASES)
def test_validate_golden(case: str, tmp_path: Path, update_golden: bool) -> None:
    case_dir = GOLDEN / case
    # a sub-folder, so symlinks that climb out of the repository land in tmp_path, not in /
    repo = tmp_path / "checkout" / "repo"
    repo.parent.mkdir()
    spec = build_repo(case_dir, repo)
    code, out, err = run_validate(repo, spec.get("args", []))
    assert "Traceback" not in out + err
    actual = f"exit: {code}\n{out}"
    expected_file = case_dir / "expected.txt"
    if update_golden:
        expected_file.write_text(actual)
        return
    assert expected_file.exists(), f"no expected.txt; run pytest with --update-golden ({case})"
    assert actual == expected_file.read_text()


def test_the_base_repository_of_the_golden_cases_is_valid(tmp_path: Path) -> None:
    code, out, err = run_validate(BASE, [])
    assert (code, out) == (0, "")
    assert "ok: 6 documents, no problems" in err


def test_every_golden_case_has_an_expected_file_and_changes_something() -> None:
    for case in CASES:
        case_dir = GOLDEN / case
        assert (case_dir / "expected.txt").is_file(), case
        assert (case_dir / "repo").is_dir() or (case_dir / "case.json").is_file(), case
