"""Commands that only read the state never create one."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["runs"], 0, "No runs."),
        (["drift"], 0, "No drift recorded yet"),
        (["schedules"], 0, "No schedules applied yet"),
        (["runs", "show", "5"], 1, "nothing has been applied yet"),
        (["logs", "5"], 1, "nothing has been applied yet"),
        (["run", "motd", "--wait"], 1, "nothing has been applied yet"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_a_command_on_a_state_that_does_not_exist_leaves_it_absent(
    tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    state = tmp_path / "state.sqlite"
    result = CliRunner().invoke(cli, [*args, "--state", str(state)])
    assert result.exit_code == code, result.output
    assert says in result.output
    assert not state.exists()
