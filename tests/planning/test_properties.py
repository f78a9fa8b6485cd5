"""The law of the planner: planning right after an apply yields no changes, also after a
second, unrelated revision is applied on top. Desired states are generated (servers, roles,
environments, templates, schedules of every form of ``when``, random targets, prune on or
off), committed to a real Git repository and applied to SQLite and PostgreSQL."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.stores import open_store

from .conftest import GitRepo, apply_repo, plan_repo

NAMES = st.sampled_from(["a", "b", "c", "d", "e", "f"])
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
WHENS = st.one_of(
    st.builds(
        lambda h, m: f'{{daily: {{at: "{h:02d}:{m:02d}"}}}}', st.integers(0, 23), st.integers(0, 59)
    ),
    st.builds(
        lambda d, h: f'{{weekly: {{days: [{d}], at: "{h:02d}:30"}}}}',
        st.sampled_from(["mon", "tue, fri", "sun"]),
        st.integers(0, 23),
    ),
    st.builds(
        lambda d: f'{{monthly: {{day: {d}, at: "03:00"}}}}', st.sampled_from(["1", "last", "15"])
    ),
    st.builds(
        lambda n, u: f"{{every: {n}{u}}}", st.integers(1, 90), st.sampled_from(["m", "h", "d"])
    ),
    st.builds(
        lambda m, h: f'{{cron: "{m} {h} * * 1-5"}}',
        st.integers(0, 59),
        st.sampled_from(["*", "2", "*/3"]),
    ),
    st.builds(lambda s: f'{{cron: "{s} 0 4 ? * MON#2"}}', st.integers(0, 59)),
    st.builds(lambda d: f'{{at: "2026-0{d}-01T02:00:00"}}', st.integers(1, 9)),
    st.builds(lambda z: f'{{daily: {{at: "02:30"}}, timezone: {z}, jitter: 5m}}', ZONES),
)


@st.composite
def revisions(draw: st.DrawFn) -> dict[str, str]:
    """The files of one valid revision."""
    roles = sorted(draw(st.sets(NAMES, min_size=1, max_size=3)))
    envs = sorted(draw(st.sets(st.sampled_from(["prod", "stage"]), min_size=1)))
    servers = draw(st.lists(st.tuples(st.sampled_from(roles), st.sampled_from(envs)), max_size=5))
    lines = "\n".join(
        f"    - {{name: s{i}, host: 10.0.0.{i + 1}, roles: [{r}], environments: [{e}]}}"
        for i, (r, e) in enumerate(servers)
    )
    files = {
        "reconciler.yaml": "apiVersion: reconciler/v1\nkind: Settings\n"
        f"spec: {{timezone: {draw(ZONES)}, prune: {str(draw(st.booleans())).lower()}}}\n",
        "inventory.yaml": "apiVersion: reconciler/v1\nkind: Inventory\nmetadata: {name: inv}\n"
        f"spec:\n  roles: {{{', '.join(f'{r}: {{}}' for r in roles)}}}\n"
        f"  environments: {{{', '.join(f'{e}: {{}}' for e in envs)}}}\n"
        f"  servers:{' []' if not servers else chr(10) + lines}\n",
        "policy.yaml": "apiVersion: reconciler/v1\nkind: Policy\nmetadata: {name: ops}\n"
        "spec:\n  users: [{name: alice, email: a@example.com}]\n"
        "  permissions: [{user: alice, run: ['*'], approve: ['*']}]\n",
        "play.yml": "- hosts: all\n  tasks: []\n",
    }
    templates = sorted(draw(st.sets(st.sampled_from(["t1", "t2", "t3"]), min_size=1)))
    for t in templates:
        approval = draw(st.booleans())
        targets = draw(st.one_of(st.none(), st.sampled_from(roles)))
        files[f"templates/{t}.yaml"] = (
            f"apiVersion: reconciler/v1\nkind: JobTemplate\nmetadata: {{name: {t}}}\nspec:\n"
            f"  type: orchestration\n  playbook: play.yml\n  timeout: {draw(st.integers(1, 9))}m\n"
            + (f"  targets: {{roles: [{targets}]}}\n" if targets else "")
            + ("  approval: {required: true, approvers: [alice]}\n" if approval else "")
        )
    for i in range(draw(st.integers(0, 6))):
        target = draw(
            st.one_of(
                st.just(""),
                st.builds(lambda r: f"  targets: {{roles: [{r}]}}\n", st.sampled_from(roles)),
                st.builds(lambda e: f"  targets: {{environments: [{e}]}}\n", st.sampled_from(envs)),
                st.builds(
                    lambda r, e: f"  targets: {{roles: [{r}], environments: [{e}]}}\n",
                    st.sampled_from(roles),
                    st.sampled_from(envs),
                ),
            )
        )
        name = draw(st.sampled_from([f"job-{i}", f"job-{i}-x"]))
        files[f"schedules/{name}.yaml"] = (
            f"apiVersion: reconciler/v1\nkind: Schedule\nmetadata: {{name: {name}}}\nspec:\n"
            f"  template: {draw(st.sampled_from(templates))}\n  owner: alice\n"
            f"  enabled: {str(draw(st.booleans())).lower()}\n{target}  when: {draw(WHENS)}\n"
        )
    return files


def commit_files(repo: GitRepo, files: dict[str, str]) -> str:
    for old in list(repo.path.rglob("*.y*ml")):
        old.unlink()
    for rel, text in files.items():
        repo.write(rel, text)
    return repo.commit()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=revisions(), second=revisions(), backend=st.sampled_from(["sqlite", "postgresql"]))
def test_planning_right_after_an_apply_yields_no_changes(
    first: dict[str, str],
    second: dict[str, str],
    backend: str,
    new_pg_state: Callable[[], str],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = str(Path(tmp) / "state.db") if backend == "sqlite" else new_pg_state()
        repo = GitRepo(Path(tmp) / "repo")
        with open_store(url) as store:
            commit_files(repo, first)
            serial = apply_repo(store, repo)
            after_first = plan_repo(store, repo)
            assert after_first.empty, [c.reason for c in after_first.changes]
            assert all(c.action == "blocked" for c in after_first.changes)
            assert apply_repo(store, repo) == serial
            assert all(o.state for o in store.list_objects("Schedule"))
            commit_files(repo, second)
            apply_repo(store, repo)
            after_second = plan_repo(store, repo)
            assert after_second.empty, [c.reason for c in after_second.changes]
            # what a plan calls blocked is exactly what Git no longer has but prune keeps
            kept = {(c.kind, c.name) for c in after_second.changes}
            assert all(c.action == "blocked" and c.kind == "Schedule" for c in after_second.changes)
            assert {("Schedule", o.name) for o in store.list_objects("Schedule")} >= kept
