"""Values that used to crash ``validate``, ``plan`` or ``apply``: each is one positioned
diagnostic now, on every command, with one JSON document on stdout.

YAML that cannot be constructed (explicit tags that do not fit their node, integers past
Python's integer-string limit), characters YAML does not allow, a ``kind`` that is not a
string, durations and instants past the time engine's range, time zone names that would take
the host's zone, and what the suite's fuzzer found (a ``valueFrom`` that is no reference,
values JSON cannot hold, an integer past the range of floats). Everything is real: the
example repository copied to a plain directory, the CLI in-process through click (a traceback
fails the test), and a SQLite state.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example-repo"


def schedule(when: str) -> str:
    """A Schedule of the example repository whose ``when`` block is ``when`` (indented)."""
    return (
        "apiVersion: reconciler/v1\n"
        "kind: Schedule\n"
        "metadata:\n"
        "  name: extra\n"
        "spec:\n"
        "  template: motd\n"
        "  owner: alice\n"
        "  when:\n" + "".join(f"    {line}\n" for line in when.splitlines())
    )


def with_variables(variables: str, when: str = "daily: {at: '02:00'}") -> str:
    """:func:`schedule` with a ``variables`` mapping (flow style) after ``when``."""
    return schedule(when) + f"  variables: {variables}\n"


def invoke(*args: str) -> tuple[int, str]:
    """The CLI in-process; any exception other than a clean exit fails the test."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


def diagnostics(out: str) -> list[tuple[str, int, int, str, str]]:
    doc = json.loads(out)
    return [
        (d["path"], d["line"], d["column"], d["code"], d["message"]) for d in doc["diagnostics"]
    ]


#: (case id, file, its text, the one expected diagnostic (path, line, column, code), words of
#: its message)
CASES = [
    (
        "integer-of-4301-digits",
        "notes.yaml",
        "answer: " + "1" * 4301 + "\n",
        ("notes.yaml", 1, 9, "yaml-value"),
        "4301 digits",
    ),
    (
        "map-tag-on-a-sequence",
        "notes.yaml",
        "a: !!map [a]\n",
        ("notes.yaml", 1, 4, "yaml-value"),
        "!!map",
    ),
    (
        "map-tag-on-a-scalar",
        "notes.yaml",
        "a: !!map a\n",
        ("notes.yaml", 1, 4, "yaml-value"),
        "!!map",
    ),
    (
        "set-tag-on-a-sequence",
        "notes.yaml",
        "a: !!set [a]\n",
        ("notes.yaml", 1, 4, "yaml-value"),
        "!!set",
    ),
    (
        "timestamp-tag-on-a-word",
        "notes.yaml",
        "a: !!timestamp x\n",
        ("notes.yaml", 1, 4, "yaml-value"),
        "!!timestamp",
    ),
    (
        "int-tag-on-a-word",
        "notes.yaml",
        "a: !!int x\n",
        ("notes.yaml", 1, 4, "yaml-value"),
        "!!int",
    ),
    (
        "float-tag-on-a-word",
        "notes.yaml",
        "a: !!float x\n",
        ("notes.yaml", 1, 4, "yaml-value"),
        "!!float",
    ),
    (
        "bool-tag-on-a-word",
        "notes.yaml",
        "a: !!bool x\n",
        ("notes.yaml", 1, 4, "yaml-value"),
        "!!bool",
    ),
    (
        "kind-that-is-a-list",
        "notes.yaml",
        "apiVersion: reconciler/v1\nkind: [x]\nmetadata: {name: a}\n",
        ("notes.yaml", 2, 7, "kind-unknown"),
        "kind",
    ),
    (
        "hex-number-of-4000-digits-as-a-time-zone",
        "schedules/extra.yaml",
        schedule("daily: {at: '02:00'}\ntimezone: 0x" + "f" * 4000),
        ("schedules/extra.yaml", 10, 15, "yaml-value"),
        "integer",
    ),
    (
        "every-of-a-trillion-days",
        "schedules/extra.yaml",
        schedule("every: 1000000000000d"),
        ("schedules/extra.yaml", 9, 12, "field-invalid"),
        "100 years",
    ),
    (
        "every-of-23-digits-of-seconds",
        "schedules/extra.yaml",
        schedule("every: 99999999999999999999999s"),
        ("schedules/extra.yaml", 9, 12, "field-invalid"),
        "100 years",
    ),
    (
        "jitter-of-a-hundred-billion-days",
        "schedules/extra.yaml",
        schedule("daily: {at: '02:00'}\njitter: 100000000000d"),
        ("schedules/extra.yaml", 10, 13, "field-invalid"),
        "100 years",
    ),
    (
        "start-in-the-last-second-of-year-9999",
        "schedules/extra.yaml",
        schedule('every: 1h\nstart: "9999-12-31T23:59:59Z"'),
        ("schedules/extra.yaml", 10, 12, "field-invalid"),
        "9000",
    ),
    (
        "at-in-the-last-second-of-year-9999-with-jitter",
        "schedules/extra.yaml",
        schedule('at: "9999-12-31T23:59:59"\njitter: 1h'),
        ("schedules/extra.yaml", 9, 9, "field-invalid"),
        "9000",
    ),
    (
        "at-before-1970",
        "schedules/extra.yaml",
        schedule('at: "0001-01-01T00:00:00+05:00"'),
        ("schedules/extra.yaml", 9, 9, "field-invalid"),
        "1970",
    ),
    (
        "value-from-that-is-a-number",
        "schedules/extra.yaml",
        with_variables("{managed_root: {valueFrom: 12}}"),
        ("schedules/extra.yaml", 10, 15, "field-invalid"),
        "valueFrom must be {env: NAME} or {file: PATH}",
    ),
    (
        "binary-data-that-is-not-utf-8",
        "schedules/extra.yaml",
        with_variables("{managed_root: !!binary /w==}"),
        ("schedules/extra.yaml", 10, 29, "field-invalid"),
        "binary data (!!binary) has no JSON form",
    ),
    (
        "nan-in-a-variable-value",
        "schedules/extra.yaml",
        with_variables("{managed_root: [.nan]}"),
        ("schedules/extra.yaml", 10, 30, "field-invalid"),
        "the number nan has no JSON form",
    ),
    (
        "control-character-in-a-file",
        "notes.yaml",
        'a: b\nc: "x\x9a"\n',
        ("notes.yaml", 2, 6, "yaml-syntax"),
        "unacceptable character #x009a",
    ),
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    dest = tmp_path / "repo"
    shutil.copytree(EXAMPLE, dest)
    return dest


@pytest.mark.parametrize(
    ("path", "text", "expected", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_a_value_past_what_can_be_read_is_one_diagnostic_on_validate_plan_and_apply(
    repo: Path,
    tmp_path: Path,
    path: str,
    text: str,
    expected: tuple[str, int, int, str],
    words: str,
) -> None:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    state = tmp_path / "state.db"

    code, out = invoke("validate", str(repo), "--format", "json")
    assert code == 1
    found = diagnostics(out)
    assert [d[:4] for d in found] == [expected], found
    assert words in found[0][4]

    code, out = invoke("plan", str(repo), "--format", "json", "--state", str(state))
    assert code == 1
    assert [d[:4] for d in diagnostics(out)] == [expected]

    code, out = invoke("apply", str(repo), "--yes", "--format", "json", "--state", str(state))
    assert code == 1
    assert [d[:4] for d in diagnostics(out)] == [expected]
    assert not state.exists()


@pytest.mark.parametrize("name", ["localtime", "posixrules", "Factory", "right/UTC", "posix/UTC"])
def test_a_time_zone_that_is_not_an_iana_name_is_refused_in_schedules_and_settings(
    repo: Path, name: str
) -> None:
    """``localtime`` is the host's zone, ``posixrules`` the host's POSIX default; neither is a
    name of the tz database, nor are Factory and the right/ and posix/ variants."""
    (repo / "schedules" / "extra.yaml").write_text(
        schedule(f"daily: {{at: '02:00'}}\ntimezone: {name}")
    )
    code, out = invoke("validate", str(repo), "--format", "json")
    assert code == 1
    assert [d[:4] for d in diagnostics(out)] == [
        ("schedules/extra.yaml", 10, 15, "timezone-unknown")
    ]

    (repo / "schedules" / "extra.yaml").unlink()
    settings = (repo / "reconciler.yaml").read_text()
    (repo / "reconciler.yaml").write_text(settings.replace("Europe/Berlin", name))
    code, out = invoke("validate", str(repo), "--format", "json")
    assert code == 1
    assert [d[:4] for d in diagnostics(out)] == [("reconciler.yaml", 5, 13, "timezone-unknown")]


def test_an_integer_past_the_range_of_floats_is_a_number_for_a_number_variable(
    repo: Path, tmp_path: Path
) -> None:
    """400 digits: more than a float holds; the check of a number variable used to convert it
    to one (OverflowError)."""
    reports = repo / "schedules" / "reports.yaml"
    reports.write_text(
        reports.read_text().replace("{threshold: 80}", "{threshold: " + "9" * 400 + "}")
    )
    state = tmp_path / "state.db"
    code, out = invoke("validate", str(repo), "--format", "json")
    assert (code, diagnostics(out)) == (0, [])
    code, out = invoke("apply", str(repo), "--yes", "--format", "json", "--state", str(state))
    assert code == 0 and json.loads(out)["applied"] is True


def test_the_longest_interval_from_the_latest_start_plans_applies_and_lists(
    repo: Path, tmp_path: Path
) -> None:
    """The largest values the bounds accept: every 100 years from the last day of year 9000,
    with 100 years of jitter; plan, apply and 100 upcoming fire times all stay in range."""
    (repo / "schedules" / "extra.yaml").write_text(
        schedule('every: 36500d\nstart: "9000-12-31T23:59:59"\njitter: 36500d')
    )
    state = tmp_path / "state.db"
    code, out = invoke("validate", str(repo), "--format", "json")
    assert (code, diagnostics(out)) == (0, [])
    code, out = invoke("plan", str(repo), "--format", "json", "--state", str(state))
    assert code == 0, out
    code, out = invoke("apply", str(repo), "--yes", "--format", "json", "--state", str(state))
    assert code == 0, out
    code, out = invoke("schedules", "--upcoming", "100", "--format", "json", "--state", str(state))
    assert code == 0, out
    rows = {r["name"]: r for r in json.loads(out)["schedules"]}
    upcoming = rows["extra"]["next"]
    assert 9000 <= int(upcoming[0][:4]) <= 9100  # 9000-12-31 in Europe/Berlin, plus jitter
    assert 1 <= len(upcoming) < 100  # slots end before the end of datetime's range
