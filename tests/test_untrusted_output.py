"""Values from a repository cannot take over the output: file names with a newline and
``::error``, keys with control characters and file names that are not UTF-8, in the text, json
and github formats of ``validate`` and in ``plan``.

Everything is real: a Git repository made with the ``git`` CLI (the non-UTF-8 name is raw
bytes on disk and in the tree), the CLI as a new process, its stdout as bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli.common import json_safe, printable
from tests.gitutil import git

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "tests" / "golden" / "validate" / "_base"

#: a file name that would end the line and start a workflow command of its own
INJECTING_NAME = "evil\n::error file=x.yaml,line=1::pwned.yaml"
#: the same bytes as os.fsencode gives them: é in Latin-1, not UTF-8
NON_UTF8_NAME = b"caf\xe9.yaml"
#: a key that moves the cursor, breaks the line three ways and writes a command
CONTROL_KEY = "bad\x1b[2Jkey\n::error::x\u2028y\x85z\r"


def _schedule(name: str, template: str, extra: str = "") -> str:
    text = (BASE / "schedules" / "deploy-web-nightly.yaml").read_text()
    text = text.replace("name: deploy-web-nightly", f"name: {name}")
    text = text.replace("  template: deploy-web", f"{extra}  template: {template}")
    return text


@pytest.fixture
def hostile_repo(tmp_path: Path) -> Path:
    """The base repository, committed, plus three files whose names or keys attack the output;
    each has one error."""
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    schedules = repo / "schedules"
    (schedules / INJECTING_NAME).write_text(_schedule("evil-one", "deploy-wbe"))
    with open(os.fsencode(schedules) + b"/" + NON_UTF8_NAME, "wb") as fh:
        fh.write(_schedule("cafe", "deploy-wbe").encode())
    key = json.dumps(CONTROL_KEY)  # a YAML double-quoted scalar with the escapes
    (schedules / "deploy-web-nightly.yaml").write_text(
        _schedule("deploy-web-nightly", "deploy-web", f"  {key}: 1\n")
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "hostile names")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "schedules"], cwd=repo, capture_output=True, check=True
    ).stdout
    assert b"schedules/" + NON_UTF8_NAME in listed.split(b"\0")  # really bytes in the tree
    return repo


def run_cli(*args: str, cwd: Path = ROOT) -> tuple[int, bytes, bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def _lines(data: bytes) -> list[str]:
    """The lines of an output, which must be valid UTF-8 with no control but the newline."""
    text = data.decode("utf-8")  # strict: an undecodable byte here fails the test
    assert "Traceback" not in text
    for ch in set(text) - {"\n"}:
        assert unicodedata.category(ch) not in ("Cc", "Cs", "Zl", "Zp"), repr(ch)
    return text.split("\n")


def _assert_no_command_lines(data: bytes) -> list[str]:
    lines = _lines(data)
    for line in lines:
        assert not line.lstrip().startswith("::"), line
    return lines


def _strings(data: Any) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [*data, *(s for v in data.values() for s in _strings(v))]
    if isinstance(data, list):
        return [s for v in data for s in _strings(v)]
    return []


@pytest.mark.parametrize("rev", [[], ["--rev", "HEAD"]], ids=["working-tree", "rev"])
def test_text_format_escapes_names_and_keys_on_one_line_each(
    hostile_repo: Path, rev: list[str]
) -> None:
    code, out, err = run_cli("validate", str(hostile_repo), *rev)
    assert code == 1
    lines = _assert_no_command_lines(out)
    _assert_no_command_lines(err)
    errors = [line for line in lines if ": error[" in line]
    assert len(errors) == 3, lines
    assert any(
        line.startswith(r"schedules/evil\n::error file=x.yaml,line=1::pwned.yaml:6:13: error[")
        for line in errors
    )
    assert any(
        line.startswith(r"schedules/caf\xe9.yaml:6:13: error[ref-template]") for line in errors
    )
    assert any(
        r'unknown field "bad\x1b[2Jkey\n::error::x\u2028y\x85z\r"' in line for line in errors
    )


@pytest.mark.parametrize("rev", [[], ["--rev", "HEAD"]], ids=["working-tree", "rev"])
def test_json_format_is_valid_utf8_with_undecodable_bytes_as_escapes(
    hostile_repo: Path, rev: list[str]
) -> None:
    code, out, _ = run_cli("validate", str(hostile_repo), "--format", "json", *rev)
    assert code == 1
    data = json.loads(out.decode("utf-8"))
    # no lone surrogate anywhere: the document survives UTF-8 however it is re-encoded
    json.dumps(data, ensure_ascii=False).encode("utf-8")
    for s in _strings(data):
        s.encode("utf-8")
    paths = sorted(d["path"] for d in data["diagnostics"])
    # JSON keeps what it can escape itself (the newline); bytes that are not UTF-8 become \xNN
    assert paths == [
        r"schedules/caf\xe9.yaml",
        "schedules/deploy-web-nightly.yaml",
        f"schedules/{INJECTING_NAME}",
    ]
    messages = [d["message"] for d in data["diagnostics"]]
    assert any(f'unknown field "{CONTROL_KEY}"' in m for m in messages)


@pytest.mark.parametrize("rev", [[], ["--rev", "HEAD"]], ids=["working-tree", "rev"])
def test_github_format_is_one_command_per_diagnostic(hostile_repo: Path, rev: list[str]) -> None:
    code, out, _ = run_cli("validate", str(hostile_repo), "--format", "github", *rev)
    assert code == 1
    lines = [line for line in _lines(out) if line]
    assert len(lines) == 3, lines
    for line in lines:
        assert line.startswith("::error file=schedules/"), line
    assert any(
        line.startswith(
            "::error file=schedules/evil%0A%3A%3Aerror file=x.yaml%2Cline=1%3A%3Apwned.yaml,"
        )
        for line in lines
    )
    assert any(line.startswith(r"::error file=schedules/caf\xe9.yaml,line=6,") for line in lines)
    assert any(r'"bad\x1b[2Jkey%0A::error::x\u2028y\x85z%0D"' in line for line in lines)


def _inventory_with_host_var(repo: Path, value: str) -> None:
    path = repo / "inventory.yaml"
    text = path.read_text()
    marker = "{name: web-2, host: 10.0.0.12,"
    assert marker in text
    var = f"vars: {{{json.dumps(CONTROL_KEY)}: {json.dumps(value)}}},"
    path.write_text(text.replace(marker, f"{marker} {var}"))


def test_plan_escapes_keys_and_values_of_a_field_diff(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    _inventory_with_host_var(repo, "old\u2028\x07")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a host var")
    state = str(tmp_path / "state.sqlite")
    code, _, err = run_cli("apply", str(repo), "--yes", "--state", state)
    assert code == 0, err
    text = (repo / "inventory.yaml").read_text().replace("old\\u2028", "new\\u2028")
    (repo / "inventory.yaml").write_text(text)
    git(repo, "commit", "-q", "-am", "change it")

    code, out, err = run_cli("plan", str(repo), "--state", state)
    assert code == 0, err
    lines = _assert_no_command_lines(out)
    diff = [line for line in lines if "vars." in line]
    assert diff == [
        r"      ~ spec.servers[web-2].vars.bad\x1b[2Jkey\n::error::x\u2028y\x85z\r: "
        r'"old\u2028\u0007" -> "new\u2028\u0007"'
    ]

    code, out, err = run_cli("plan", str(repo), "--state", state, "--format", "json")
    assert code == 0, err
    json.dumps(json.loads(out.decode("utf-8")), ensure_ascii=False).encode("utf-8")


def test_a_plan_of_a_revision_that_does_not_validate_escapes_its_diagnostics(
    hostile_repo: Path,
) -> None:
    code, out, err = run_cli("plan", str(hostile_repo))
    assert code == 1
    assert len([line for line in _assert_no_command_lines(out) if ": error[" in line]) == 3
    _assert_no_command_lines(err)


def test_an_error_line_quoting_a_value_stays_one_line(hostile_repo: Path) -> None:
    code, out, err = run_cli("validate", str(hostile_repo), "--rev", "nope\n::error::x")
    assert (code, out) == (1, b"")
    assert _assert_no_command_lines(err) == [
        r'error: revision "nope\n::error::x" does not exist in ' + str(hostile_repo),
        "",
    ]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain/ascii-and-ünïcödé.yaml", "plain/ascii-and-ünïcödé.yaml"),
        ("a\nb\rc\td", r"a\nb\rc\td"),
        ("\x00\x1b\x7f\x85\x9f", r"\x00\x1b\x7f\x85\x9f"),
        ("line\u2028para\u2029", r"line\u2028para\u2029"),
        ("\u202eevil\u2066", r"\u202eevil\u2066"),
        (os.fsdecode(b"caf\xe9\xff"), r"caf\xe9\xff"),
        ("\ud800", r"\ud800"),
    ],
)
def test_printable_shows_what_a_terminal_would_act_on(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_json_safe_changes_only_surrogates_in_keys_and_values() -> None:
    key = os.fsdecode(b"\xff")
    data = {key: [os.fsdecode(b"caf\xe9"), "a\nb", 3, None], "ok": ("\u2028",)}
    assert json_safe(data) == {r"\xff": [r"caf\xe9", "a\nb", 3, None], "ok": ["\u2028"]}
