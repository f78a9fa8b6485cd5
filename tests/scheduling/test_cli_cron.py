"""``reconciler cron explain`` through click's CliRunner, and the plain-English descriptions."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.scheduling import parse_cron
from reconciler.scheduling.explain import describe_cron


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["cron", "explain", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_output_has_the_contract_keys_and_offsets() -> None:
    code, out, _ = run(
        "30 2 * * *",
        "--timezone",
        "America/New_York",
        "--count",
        "3",
        "--after",
        "2026-03-07T00:00:00-05:00",
        "--format",
        "json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["expression"] == "30 2 * * *"
    assert doc["dialect"] == "unix"
    assert doc["timezone"] == "America/New_York"
    assert doc["description"] == "At 02:30."
    assert doc["dst_rule"] == "fixed-time"
    assert doc["next"] == [
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]


def test_text_output_names_the_dialect_rule_and_fire_times() -> None:
    code, out, _ = run("0 15 10 ? * MON-FRI", "--after", "2026-12-01T00:00:00Z", "-n", "2")
    assert code == 0
    assert "quartz" in out
    assert "At 10:15 on Monday through Friday." in out
    assert "fixed-time" in out
    assert "2026-12-01T10:15:00+00:00" in out and "2026-12-02T10:15:00+00:00" in out


def test_the_default_timezone_is_utc_and_after_defaults_to_now() -> None:
    code, out, _ = run("* * * * *", "--format", "json", "--count", "2")
    doc = json.loads(out)
    assert code == 0 and doc["timezone"] == "UTC" and len(doc["next"]) == 2
    assert all(t.endswith("+00:00") for t in doc["next"])
    assert doc["dst_rule"] == "real-time"


def test_an_invalid_expression_exits_1_with_the_reason_and_a_caret() -> None:
    code, out, err = run("0 0 12 ? * 8")
    assert code == 1
    assert "day-of-week" in err and "column 12" in err
    lines = err.splitlines()
    expr_line = next(i for i, line in enumerate(lines) if line.strip() == "0 0 12 ? * 8")
    assert lines[expr_line + 1].index("^") == lines[expr_line].index("8")
    assert "Traceback" not in out + err


def test_an_invalid_expression_in_json_is_one_document_with_the_position() -> None:
    code, out, _ = run("0 0 12 ? JAN-DEC/3 *", "--format", "json")
    assert code == 1
    err = json.loads(out)["error"]
    assert (err["field"], err["column"]) == ("month", 10)


def test_a_valid_expression_that_never_fires_exits_0_with_an_empty_next() -> None:
    code, out, _ = run("0 0 30 2 *", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["next"] == [] and "never" in doc["note"]
    code, out, _ = run("0 15 10 ? * 6L 2002-2005", "--after", "2026-01-01T00:00:00Z")
    assert code == 0 and "never fires" in out


def test_bad_timezone_and_bad_after_are_one_line_errors() -> None:
    code, _, err = run("0 9 * * *", "--timezone", "Mars/Base")
    assert code == 1 and "IANA" in err
    code, _, err = run("0 9 * * *", "--after", "yesterday")
    assert code == 1 and "ISO-8601" in err


@pytest.mark.parametrize("name", ["localtime", "posixrules", "Factory", "right/UTC", "posix/UTC"])
def test_a_timezone_that_names_the_hosts_configuration_is_refused(name: str) -> None:
    """zoneinfo loads these from the host's tz directory, but none is an IANA zone name:
    ``localtime`` is whatever zone the host is set to."""
    result = CliRunner().invoke(
        cli, ["cron", "explain", "0 9 * * *", "--timezone", name], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: --timezone: ") and "IANA" in result.stderr


@pytest.mark.parametrize(
    "after", ["9999-12-31T23:59:59Z", "9999-12-31T23:59:59", "0001-01-01T00:00:00+05:00"]
)
@pytest.mark.parametrize("tz", ["UTC", "Asia/Tokyo", "America/New_York"])
def test_an_after_outside_the_years_1970_to_9000_is_a_one_line_error(after: str, tz: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["cron", "explain", "* * * * *", "--after", after, "--timezone", tz, "--format", "json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]["message"]
    assert error.startswith("--after: ") and "1970 to 9000" in error


def test_the_last_after_that_is_accepted_has_fire_times() -> None:
    code, out, _ = run(
        "0 0 1 1 *", "--after", "9000-12-31T23:59:59+00:00", "--format", "json", "-n", "2"
    )
    assert code == 0 and json.loads(out)["next"] == [
        "9001-01-01T00:00:00+00:00",
        "9002-01-01T00:00:00+00:00",
    ]


def test_a_naive_after_is_a_wall_clock_time_of_the_timezone() -> None:
    code, out, _ = run(
        "0 9 * * *",
        "--timezone",
        "Asia/Tokyo",
        "--after",
        "2026-06-01T08:59:00",
        "--format",
        "json",
        "-n",
        "1",
    )
    assert code == 0 and json.loads(out)["next"] == ["2026-06-01T09:00:00+09:00"]


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ("30 2 * * 1,4", "At 02:30 on Monday and Thursday."),
        ("*/15 9-17 * * *", "At every 15th minute past every hour from 9 through 17."),
        ("* * * * *", "At every minute."),
        ("0 * * * *", "At minute 0."),
        ("0 0 1 * 1", "At 00:00 on day-of-month 1 and on Monday."),
        ("0 0 */10 * 1", "At 00:00 on every 10th day-of-month if it is Monday."),
        ("0 9 * jan-mar *", "At 09:00 in January through March."),
        (
            "0 15 10 ? * 6L 2002-2005",
            "At 10:15 on the last Friday of the month in 2002 through 2005.",
        ),
        ("0 0 12 ? * 2#5", "At 12:00 on the 5th Monday of the month."),
        ("0 0 12 LW * ?", "At 12:00 on the last weekday of the month."),
        ("0 0 12 L-3 * ?", "At 12:00 3 days before the last day of the month."),
        ("0 0 12 15W * ?", "At 12:00 on the weekday nearest day 15 of the month."),
        ("0 0 12 1,15 * ?", "At 12:00 on day-of-month 1 and 15."),
        ("*/7 * * * * ?", "At every 7th second."),
        ("30 15 10 * * ?", "At 10:15:30."),
        ("0 0 12 ? * SUN", "At 12:00 on Sunday."),
    ],
)
def test_descriptions_read_like_crontab_guru(expr: str, text: str) -> None:
    assert describe_cron(parse_cron(expr)) == text


def test_help_is_fast_and_does_not_import_the_engine() -> None:
    import subprocess
    import sys

    code = (
        "import sys, time; t=time.perf_counter();"
        "from reconciler.cli.main import main;"
        "sys.argv=['reconciler','cron','explain','--help'];"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main()\n"
        "    except SystemExit: pass\n"
        "assert 'reconciler.scheduling.cron' not in sys.modules, 'engine imported by --help'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
