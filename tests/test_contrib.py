"""``contrib/``: the alert rules and the scrape configuration name only metrics that
``/metrics`` exposes (docs/metrics.md lists exactly those, checked by tests/api/test_metrics.py),
and the systemd unit gives a draining ``serve`` more time than its grace period."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def documented_metrics() -> set[str]:
    doc = (ROOT / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(reconciler_[a-z_]+)` \|", doc, flags=re.M))


def test_every_alert_names_metrics_that_exist_and_says_what_to_do() -> None:
    rules = yaml.safe_load((ROOT / "contrib" / "prometheus" / "alerts.yml").read_text())
    known = documented_metrics()
    seen = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"].startswith("Reconciler") and rule["annotations"]["summary"]
            for name in re.findall(r"\breconciler_[a-z_]+", rule["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                assert base in known, f"{rule['alert']} uses {name}, which /metrics lacks"
                seen += 1
    assert seen >= 8


def test_the_scrape_configuration_sends_the_read_key_as_a_bearer_token() -> None:
    conf = yaml.safe_load((ROOT / "contrib" / "prometheus" / "scrape.yml").read_text())
    job = conf["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]


def test_the_systemd_unit_drains_within_its_stop_timeout() -> None:
    unit = (ROOT / "contrib" / "reconciler.service").read_text()
    execstart = " ".join(unit.split("ExecStart=")[1].split("\n")[:2]).replace("\\", " ")
    assert " serve " in execstart and "--listen 127.0.0.1:" in execstart
    grace = int(re.search(r"--grace (\d+)s", execstart).group(1))  # type: ignore[union-attr]
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, flags=re.M).group(1))  # type: ignore[union-attr]
    assert stop > grace
    assert re.search(r"^KillSignal=SIGTERM$", unit, flags=re.M)
