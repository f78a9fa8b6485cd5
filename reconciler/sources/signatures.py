"""Verifying a commit's signature against trusted keys with ``ssh-keygen`` or ``gpg``. I/O.

Who calls it: :mod:`reconciler.engine.signing` (the daemon's reconcile pass, ``plan`` and
``apply``), with the signature and payload that :meth:`reconciler.sources.git.GitSource.
commit_signature` extracts.

An SSH signature (``-----BEGIN SSH SIGNATURE-----``) names its public key; the key must be one
of the trusted SSH keys, then ``ssh-keygen -Y verify`` checks the signature over the payload
with an allowed-signers file that holds that one key (namespace ``git``, as Git signs). An
OpenPGP signature is checked by ``gpg --verify`` with ``--status-fd``: the fingerprint of its
``VALIDSIG`` line (the signing key or its primary key) must be trusted. gpg reads the public
keys from the keyring of the user running reconciler (``$GNUPGHOME``, else ``~/.gnupg``).

The tools run without a shell, by absolute path, with a minimal environment, a timeout and
their files in a private temporary directory that is removed afterwards. Nothing here raises
for a bad signature: :func:`verify` returns a :class:`Verdict`.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reconciler.model.settings import SigningKey, ssh_blob_type, ssh_fingerprint

TIMEOUT_SECONDS = 20.0
_SSH_ARMOR = b"-----BEGIN SSH SIGNATURE-----"
_PGP_ARMOR = b"-----BEGIN PGP SIGNATURE-----"
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

Code = Literal["ok", "commit-unsigned", "commit-bad-signature", "commit-unverifiable"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What checking one signature found: ``code`` ``ok`` with the signer's ``key`` (its
    :attr:`~reconciler.model.settings.SigningKey.ident`), or a diagnostic code and why."""

    code: Code
    message: str
    key: str | None = None

    @property
    def ok(self) -> bool:
        return self.code == "ok"


def verify(signature: bytes, payload: bytes, keys: Sequence[SigningKey]) -> Verdict:
    """Check ``signature`` over ``payload`` against the trusted ``keys``."""
    head = signature.lstrip()
    if head.startswith(_SSH_ARMOR):
        return _verify_ssh(signature, payload, [k for k in keys if k.kind == "ssh"])
    if head.startswith(_PGP_ARMOR):
        return _verify_openpgp(signature, payload, [k for k in keys if k.kind == "openpgp"])
    return Verdict(
        "commit-bad-signature",
        "it carries a signature of a kind reconciler does not verify (only SSH and OpenPGP "
        "signatures are; X.509 is not)",
    )


def signature_key(signature: bytes) -> tuple[str, bytes, str]:
    """(key type, public key blob, namespace) of an armoured SSH signature; ValueError when
    it is not one (PROTOCOL.sshsig: ``SSHSIG``, version, key, namespace, reserved, hash,
    signature)."""
    lines = signature.strip().splitlines()
    if len(lines) < 3 or lines[0].strip() != _SSH_ARMOR:
        raise ValueError("not an armoured SSH signature")
    try:
        raw = base64.b64decode(b"".join(line.strip() for line in lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the SSH signature is not base64") from None
    if not raw.startswith(b"SSHSIG") or len(raw) < 10:
        raise ValueError("the SSH signature has no SSHSIG header")
    pos = 10  # magic and the version

    def string() -> bytes:
        nonlocal pos
        if pos + 4 > len(raw):
            raise ValueError("the SSH signature is truncated")
        (n,) = struct.unpack(">I", raw[pos : pos + 4])
        if pos + 4 + n > len(raw):
            raise ValueError("the SSH signature is truncated")
        value = raw[pos + 4 : pos + 4 + n]
        pos += 4 + n
        return value

    blob = string()
    namespace = string().decode("ascii", "replace")
    key_type = ssh_blob_type(blob)
    if key_type is None:
        raise ValueError("the SSH signature holds no public key")
    return key_type, blob, namespace


def _tool(name: str) -> str | None:
    return shutil.which(name)


def _run(
    argv: list[str], payload: bytes, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv,
        input=payload,
        env=env,
        capture_output=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def _verify_ssh(signature: bytes, payload: bytes, keys: Sequence[SigningKey]) -> Verdict:
    try:
        key_type, blob, namespace = signature_key(signature)
    except ValueError as e:
        return Verdict("commit-bad-signature", f"its SSH signature cannot be read: {e}")
    ident = f"{key_type} {ssh_fingerprint(blob)}"
    key = next((k for k in keys if k.blob == blob), None)
    if key is None:
        return Verdict(
            "commit-bad-signature",
            f"it is signed by {ident}, which is not one of the trusted keys",
        )
    if namespace != "git":
        return Verdict(
            "commit-bad-signature",
            f"its SSH signature is for namespace {namespace!r}, not git",
        )
    exe = _tool("ssh-keygen")
    if exe is None:
        return Verdict(
            "commit-unverifiable",
            "it has an SSH signature, and ssh-keygen (OpenSSH 8.2 or later) is not installed "
            "here to verify it: install openssh-client",
        )
    tmp = Path(tempfile.mkdtemp(prefix="reconciler-sig-"))  # mode 0700: ours alone
    try:
        allowed = tmp / "allowed_signers"
        allowed.write_text(
            f'trusted namespaces="git" {key_type} {base64.b64encode(blob).decode()}\n',
            encoding="ascii",
        )
        sig = tmp / "commit.sig"
        sig.write_bytes(signature)
        env = {"PATH": _SAFE_PATH, "LC_ALL": "C"}
        argv = [exe, "-Y", "verify", "-f", str(allowed), "-I", "trusted", "-n", "git"]
        try:
            done = _run([*argv, "-s", str(sig)], payload, env)
        except subprocess.TimeoutExpired:
            return Verdict(
                "commit-unverifiable", f"ssh-keygen did not answer within {TIMEOUT_SECONDS:g} s"
            )
        except OSError as e:
            return Verdict("commit-unverifiable", f"ssh-keygen cannot be run: {e.strerror}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if done.returncode != 0:
        why = _last_line(done.stderr) or _last_line(done.stdout) or "it does not verify"
        return Verdict(
            "commit-bad-signature", f"its SSH signature by {ident} does not verify: {why}"
        )
    return Verdict("ok", f"signed by {ident}", key.ident)


def _verify_openpgp(signature: bytes, payload: bytes, keys: Sequence[SigningKey]) -> Verdict:
    if not keys:
        return Verdict(
            "commit-bad-signature",
            "it has an OpenPGP signature, and no OpenPGP fingerprint is among the trusted keys",
        )
    exe = _tool("gpg")
    if exe is None:
        return Verdict(
            "commit-unverifiable",
            "it has an OpenPGP signature, and gpg is not installed here to verify it: install "
            "gnupg (apt-get install gpg), or trust SSH keys instead",
        )
    tmp = Path(tempfile.mkdtemp(prefix="reconciler-sig-"))
    try:
        sig = tmp / "commit.sig"
        sig.write_bytes(signature)
        env = {"PATH": _SAFE_PATH, "LC_ALL": "C", "HOME": os.path.expanduser("~")}
        if os.environ.get("GNUPGHOME"):
            env["GNUPGHOME"] = os.environ["GNUPGHOME"]
        argv = [exe, "--batch", "--no-tty", "--status-fd", "1", "--verify", str(sig), "-"]
        try:
            done = _run(argv, payload, env)
        except subprocess.TimeoutExpired:
            return Verdict(
                "commit-unverifiable", f"gpg did not answer within {TIMEOUT_SECONDS:g} s"
            )
        except OSError as e:
            return Verdict("commit-unverifiable", f"gpg cannot be run: {e.strerror}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    status = [line.split() for line in done.stdout.decode("utf-8", "replace").splitlines()]
    good = any(w[:2] == ["[GNUPG:]", "GOODSIG"] for w in status)
    valid = [w for w in status if w[:2] == ["[GNUPG:]", "VALIDSIG"] and len(w) >= 3]
    if not good or not valid:
        missing = next((w for w in status if w[:2] == ["[GNUPG:]", "NO_PUBKEY"]), None)
        if missing is not None and len(missing) >= 3:
            return Verdict(
                "commit-bad-signature",
                f"it is signed by OpenPGP key {missing[2]}, which is not in the keyring (import "
                "the trusted keys into the keyring of the user running reconciler)",
            )
        why = _last_line(done.stderr) or "it does not verify"
        return Verdict("commit-bad-signature", f"its OpenPGP signature does not verify: {why}")
    fingerprints = {valid[0][2].upper()}
    if len(valid[0]) >= 12:
        fingerprints.add(valid[0][11].upper())  # the primary key of a signing subkey
    key = next((k for k in keys if k.ident in fingerprints), None)
    if key is None:
        return Verdict(
            "commit-bad-signature",
            f"it is signed by OpenPGP key {valid[0][2].upper()}, which is not one of the "
            "trusted keys",
        )
    return Verdict("ok", f"signed by OpenPGP key {key.ident}", key.ident)


def _last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""
