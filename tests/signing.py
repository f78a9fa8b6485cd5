"""Real signing keys and signed commits for the tests: ``ssh-keygen -t ed25519`` keys made by
the test, commits signed by the real ``git commit -S`` (SSH format), and an OpenPGP key made by
``gpg --batch`` in a private ``GNUPGHOME``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.gitutil import git


def ssh_key(where: Path, name: str) -> tuple[Path, str]:
    """A new ed25519 key without a passphrase: (private key file, public key line)."""
    where.mkdir(parents=True, exist_ok=True)
    key = where / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return key, (where / f"{name}.pub").read_text().strip()


def ssh_commit(repo: Path, message: str, key: Path | None) -> str:
    """Commit everything in ``repo``, SSH-signed with ``key`` (unsigned when None); its SHA."""
    git(repo, "add", "-A")
    if key is None:
        git(repo, "commit", "-q", "--allow-empty", "-m", message)
    else:
        git(
            repo,
            "-c",
            "gpg.format=ssh",
            "-c",
            f"user.signingkey={key}",
            "commit",
            "-q",
            "--allow-empty",
            "-S",
            "-m",
            message,
        )
    return git(repo, "rev-parse", "HEAD")


def settings_with_keys(*keys: str) -> str:
    """A Settings document that requires commits signed by ``keys``."""
    listed = "".join(f"\n      - {k!r}" for k in keys)
    return (
        "apiVersion: reconciler/v1\nkind: Settings\nspec:\n  timezone: UTC\n"
        f"  requireSignedCommits:\n    keys:{listed}\n"
    )


def gpg_key(home: Path) -> str:
    """A new OpenPGP signing key (no passphrase) in the keyring ``home``; its fingerprint."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {"GNUPGHOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-generate-key",
            "Test Signer <signer@example.com>",
            "ed25519",
            "sign",
            "never",
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=60,
    )
    out = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--fingerprint", "signer@example.com"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    ).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def gpg_commit(repo: Path, message: str, home: Path, fingerprint: str) -> str:
    """Commit everything, OpenPGP-signed with the key ``fingerprint`` of keyring ``home``."""
    git(repo, "add", "-A")
    git(
        repo,
        "-c",
        f"user.signingkey={fingerprint}",
        "commit",
        "-q",
        "--allow-empty",
        "-S",
        "-m",
        message,
        env={"GNUPGHOME": str(home)},
    )
    return git(repo, "rev-parse", "HEAD")
