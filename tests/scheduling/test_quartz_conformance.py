"""The product agrees with Quartz 2.3.2 on every case of conformance/quartz-cron.json.

The data was computed by Quartz itself; its provenance is in conformance/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.scheduling import CronSyntaxError, build_trigger, parse_cron

from .conftest import iso, when

CONFORMANCE = Path(__file__).resolve().parent / "conformance" / "quartz-cron.json"


def _cases() -> list[dict[str, Any]]:
    if not CONFORMANCE.is_file():  # fail loudly: a missing file must not pass as "no cases"
        raise FileNotFoundError(f"conformance file missing: {CONFORMANCE}")
    cases: list[dict[str, Any]] = json.loads(CONFORMANCE.read_text())
    assert len(cases) >= 50, "the conformance sample shrank unexpectedly"
    return cases


CASES = _cases()


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["valid"]], ids=lambda c: f"{c['id']}:{c['expression']}"
)
def test_every_expression_quartz_accepts_fires_when_quartz_fires(case: dict[str, Any]) -> None:
    tr = build_trigger(when(cron=case["expression"], timezone=case["timezone"]), "UTC")
    got = [
        s.strftime("%Y-%m-%dT%H:%M:%SZ") for s in tr.slots_after(iso(case["start"]), case["count"])
    ]
    assert got == case["next"], case["note"]


@pytest.mark.parametrize(
    "case", [c for c in CASES if not c["valid"]], ids=lambda c: f"{c['id']}:{c['expression']}"
)
def test_every_expression_quartz_rejects_is_rejected(case: dict[str, Any]) -> None:
    with pytest.raises(CronSyntaxError) as info:
        parse_cron(case["expression"])
    assert info.value.message
    assert 1 <= info.value.column <= max(1, len(case["expression"]) + 1)


def test_the_conformance_sample_holds_both_valid_and_invalid_cases() -> None:
    assert any(c["valid"] for c in CASES) and any(not c["valid"] for c in CASES)
