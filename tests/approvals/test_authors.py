"""The authors of a change, read from Git (sources/git.py): the commits between two revisions
that touched some files, bounded, with merges and rewritten histories."""

from __future__ import annotations

from pathlib import Path

from reconciler.sources.git import GitSource
from tests.gitutil import git

from .conftest import commit, write


def test_authors_are_the_commits_that_touched_the_files_since_the_old_revision(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write(root, "a.yaml", "a: 1\n")
    write(root, "b.yaml", "b: 1\n")
    old = commit(root, "alice", "start")
    write(root, "a.yaml", "a: 2\n")
    commit(root, "bob", "a by bob")
    git(root, "checkout", "-q", "-b", "side")
    write(root, "a.yaml", "a: 3\n")
    commit(root, "erin", "a by erin on a branch")
    git(root, "checkout", "-q", "main")
    write(root, "c.yaml", "c: 1\n")
    commit(root, "frank", "c by frank")
    git(root, "merge", "-q", "--no-ff", "side", "-m", "merge")
    head = git(root, "rev-parse", "HEAD")
    src = GitSource(str(root))
    paths = {"a": ["a.yaml"], "b": ["b.yaml"], "c": ["c.yaml"]}
    got = src.change_authors(old, head, paths)
    assert got["a"] == ("bob@example.com", "erin@example.com")
    assert got["c"] == ("frank@example.com",)
    # no commit touched b: the author of the new tip (the merge, made by the test's git)
    assert got["b"] == ("test@example.com",)
    # nothing applied before: the tip's author for everything
    assert src.change_authors(None, head, {"a": ["a.yaml"]}) == {"a": ("test@example.com",)}
    # more commits than the bound: the tip's author counts as well
    bounded = src.change_authors(old, head, {"a": ["a.yaml"]}, limit=2)
    assert "test@example.com" in bounded["a"]
