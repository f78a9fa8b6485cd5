"""Values that used to crash ``validate``, ``plan`` or ``apply``: each is one positioned
diagnostic now, on every command, with one JSON document on stdout.

YAML that cannot be constructed (explicit tags that do not fit their node, integers past
Python's integer-string limit), characters YAML does not allow, and a ``kind`` that is not a
string. Everything is real: the example repository copied to a plain directory, the CLI
in-process through click (a traceback fails the test), and a SQLite state.
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
