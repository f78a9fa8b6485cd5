"""Trusted keys of ``requireSignedCommits`` and the signature checks that need no repository:
key lines and fingerprints as users paste them, a malformed key caught by ``validate``, and
signatures that are damaged, of another kind or made for another namespace."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.engine.desired import load_repo
from reconciler.model.settings import parse_signing_key
from reconciler.sources.signatures import verify
from tests.signing import settings_with_keys, ssh_key


def test_key_lines_and_fingerprints_are_read_as_users_paste_them(tmp_path: Path) -> None:
    _, pub = ssh_key(tmp_path, "k")
    shown = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    key = parse_signing_key(pub)
    assert key.kind == "ssh" and key.ident == f"ssh-ed25519 {shown}"
    assert parse_signing_key(" ".join(pub.split()[:2])).ident == key.ident  # no comment
    fpr = "4E1F 799A A4FF 2279 F0D9  1D1B 2A2C 5D4E 3F6A 7B8C"
    assert parse_signing_key(fpr.lower()).ident == fpr.replace(" ", "")
    assert parse_signing_key("0x" + fpr.replace(" ", "")).kind == "openpgp"
    for bad in ("", "ssh-ed25519 not-base64!", "ssh-rsa " + pub.split()[1], "ABCD", "alice"):
        with pytest.raises(ValueError):
            parse_signing_key(bad)


def test_validate_reports_a_malformed_key_where_it_is_written(tmp_path: Path) -> None:
    (tmp_path / "reconciler.yaml").write_text(settings_with_keys("ssh-ed25519 AAAA-broken"))
    _, result = load_repo(str(tmp_path), None, "worktree")
    assert [(d.path, d.code) for d in result.diagnostics] == [("reconciler.yaml", "field-invalid")]
    assert "not base64" in result.diagnostics[0].message


def test_damaged_foreign_and_other_namespace_signatures_are_refused(tmp_path: Path) -> None:
    priv, pub = ssh_key(tmp_path, "k")
    keys = [parse_signing_key(pub)]
    payload = tmp_path / "payload"
    payload.write_bytes(b"tree 0000\n\nmessage\n")
    subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", str(priv), "-n", "file", str(payload)],
        check=True,
        capture_output=True,
    )
    other_ns = (tmp_path / "payload.sig").read_bytes()
    got = verify(other_ns, payload.read_bytes(), keys)
    assert got.code == "commit-bad-signature" and "namespace 'file'" in got.message
    damaged = b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n"
    assert verify(damaged, b"x", keys).code == "commit-bad-signature"
    x509 = b"-----BEGIN SIGNED MESSAGE-----\nMIIB\n-----END SIGNED MESSAGE-----\n"
    assert "X.509" in verify(x509, b"x", keys).message
