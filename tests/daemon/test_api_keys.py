"""``reconciler api-key``: the secret is printed once and stored only as a hash; bad requests
are one clear line; a revoked key stops working."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.engine.keys import authenticate
from reconciler.stores import open_store

from .conftest import apply_dir, schedule, write_repo


def _cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_a_key_is_shown_once_stored_as_a_hash_and_revoked(tmp_path: Path) -> None:
    state = str(tmp_path / "state.sqlite")
    with open_store(state) as store:
        apply_dir(
            store,
            write_repo(tmp_path / "repo", {"a": schedule("a", "{every: 1h}")}),
            datetime.now(UTC),
        )
    code, out, _ = _cli(
        "api-key",
        "create",
        "ci",
        "--scope",
        "trigger",
        "--template",
        "ping",
        "--state",
        state,
        "--format",
        "json",
    )
    assert code == 0
    made = json.loads(out)
    assert made["scopes"] == ["trigger"] and made["templates"] == ["ping"]
    secret = made["secret"]
    assert secret.startswith("rk_") and len(secret) > 40
    assert secret.encode() not in Path(state).read_bytes()
    code, out, _ = _cli("api-key", "list", "--state", state, "--format", "json")
    assert secret not in out and json.loads(out)["api_keys"][0]["name"] == "ci"
    with open_store(state) as store:
        key = authenticate(store, secret)
        assert key is not None and key.name == "ci"
        assert authenticate(store, secret[:-1] + "x") is None
    assert _cli("api-key", "revoke", "ci", "--state", state)[0] == 0
    with open_store(state) as store:
        assert authenticate(store, secret) is None
    code, _, err = _cli("api-key", "revoke", "ci", "--state", state)
    assert code == 1 and "no active API key" in err


def test_bad_key_requests_are_one_line_each(tmp_path: Path) -> None:
    state = str(tmp_path / "state.sqlite")
    with open_store(state) as store:
        apply_dir(
            store,
            write_repo(tmp_path / "repo", {"a": schedule("a", "{every: 1h}")}),
            datetime.now(UTC),
        )
    cases = [
        (["--scope", "trigger"], "needs the templates"),
        (["--scope", "approve"], "--user NAME"),
        (["--scope", "approve", "--user", "alcie"], 'did you mean "alice"'),
        (["--scope", "read", "--user", "alice"], "only applies"),
    ]
    for extra, words in cases:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler",
                "api-key",
                "create",
                "k",
                *extra,
                "--state",
                state,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert r.returncode == 1, extra
        assert r.stdout == ""
        assert r.stderr.count("\n") == 1 and words in r.stderr, (extra, r.stderr)
    assert (
        _cli(
            "api-key",
            "create",
            "approver",
            "--scope",
            "approve",
            "--user",
            "alice",
            "--state",
            state,
        )[0]
        == 0
    )
