"""Running the real `git` CLI in tests, isolated from the user's and the system's Git config."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``git ARGS`` in ``repo`` as a test author; returns stdout, raises on failure."""
    full = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        **(env or {}),
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=full, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()
