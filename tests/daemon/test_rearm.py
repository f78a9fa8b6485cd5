"""A replica fires schedules that another replica or a command applied: its housekeeping sees
the state's serial move and re-arms its firing loop (no commit of its own repository needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from reconciler.stores import open_store

from .conftest import Serve, apply_dir, ledger_slots, make_repo, schedule, until, write_repo


def test_a_schedule_applied_by_someone_else_is_fired_within_the_housekeeping_interval(
    tmp_path: Path, serves: list[Serve]
) -> None:
    idle = schedule("idle", '{cron: "0 3 * * *"}')
    repo = make_repo(tmp_path, {"idle": idle})
    state = str(tmp_path / "state.sqlite")
    s = Serve(repo, state, "--workers", "1", "--poll", "1h")
    serves.append(s)
    with open_store(state) as store:
        until(lambda: store.info().revision is not None, 20, "the first apply")
        # as another replica (or reconciler apply from another checkout) would
        other = write_repo(
            tmp_path / "other", {"idle": idle, "tick": schedule("tick", "{every: 1s}")}
        )
        apply_dir(store, other, datetime.now(UTC))
        until(lambda: len(ledger_slots(store, "tick")) >= 2, 12, "the other's schedule fired")
    assert "Traceback" not in s.log.read_text()
