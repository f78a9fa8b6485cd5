"""The documentation stays in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

from reconciler.model.diagnostics import CODES

DOC = Path(__file__).resolve().parent.parent / "docs" / "diagnostics.md"


def documented_codes() -> list[str]:
    return re.findall(r"^#### `([a-z0-9-]+)`", DOC.read_text(), flags=re.M)


def test_every_diagnostic_code_is_documented_and_every_documented_code_exists() -> None:
    documented = documented_codes()
    assert sorted(set(CODES) - set(documented)) == [], "codes missing from docs/diagnostics.md"
    assert sorted(set(documented) - set(CODES)) == [], "docs/diagnostics.md lists unknown codes"
    assert len(documented) == len(set(documented)), "a code is documented twice"


def test_diagnostic_codes_are_documented_in_the_order_of_the_code() -> None:
    assert documented_codes() == list(CODES)
