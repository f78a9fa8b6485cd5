"""Shared pytest set-up: the ``--update-golden`` option and an isolated parse cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite the expected output of golden tests instead of comparing with it.",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the on-disk parse cache of in-process CLI runs out of the user's home."""
    path = tmp_path_factory.mktemp("reconciler-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("RECONCILER_CACHE_DIR", str(path))
    yield path
    mp.undo()
