"""The Settings kind: repository-wide options (at most one document). Pure.

Also the trusted keys of ``requireSignedCommits`` (:func:`parse_signing_key`): an SSH public
key line or an OpenPGP fingerprint, and the one form a key is recorded and shown in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from reconciler.model.common import EnvOrFile, Strict

_FINGERPRINT_RE = re.compile(r"^(?:[0-9A-F]{40}|[0-9A-F]{64})$")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One trusted key of ``requireSignedCommits``.

    ``ident`` is how the key is recorded with an applied revision and on runs: for SSH the key
    type and its SHA-256 fingerprint (``ssh-ed25519 SHA256:...``, as ``ssh-keygen -l`` shows
    it), for OpenPGP the fingerprint (40 or 64 upper-case hex digits)."""

    kind: Literal["ssh", "openpgp"]
    ident: str
    key_type: str = ""
    """SSH: the key type (``ssh-ed25519``); empty for OpenPGP."""
    blob: bytes = b""
    """SSH: the public key blob (what the fingerprint is a hash of)."""


def ssh_fingerprint(blob: bytes) -> str:
    """``SHA256:<base64 without padding>`` of an SSH public key blob."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def ssh_blob_type(blob: bytes) -> str | None:
    """The key type an SSH public key blob starts with, or None when it is not one."""
    if len(blob) < 4:
        return None
    (n,) = struct.unpack(">I", blob[:4])
    if n == 0 or n > 64 or len(blob) < 4 + n:
        return None
    try:
        return blob[4 : 4 + n].decode("ascii")
    except UnicodeDecodeError:
        return None


def parse_signing_key(text: str) -> SigningKey:
    """``ssh-ed25519 AAAA... comment`` or an OpenPGP fingerprint (spaces allowed, any case,
    an optional ``0x``); ValueError with the reason otherwise."""
    words = text.split()
    if not words:
        raise ValueError("an empty key")
    if len(words) >= 2 and re.match(r"^(ssh-|ecdsa-|sk-)", words[0]):
        try:
            blob = base64.b64decode(words[1], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"{words[0]} key: the second word is not base64 (give the whole line of the "
                ".pub file)"
            ) from None
        if ssh_blob_type(blob) != words[0]:
            raise ValueError(f"{words[0]} key: the key data is not a {words[0]} public key")
        return SigningKey("ssh", f"{words[0]} {ssh_fingerprint(blob)}", words[0], blob)
    hexed = "".join(words).upper().removeprefix("0X")
    if _FINGERPRINT_RE.match(hexed):
        return SigningKey("openpgp", hexed)
    raise ValueError(
        f"{text[:40]!r} is neither an SSH public key line (ssh-ed25519 AAAA... name) nor an "
        "OpenPGP fingerprint (40 hex digits, as gpg --fingerprint shows it)"
    )


def _check_key(text: str) -> str:
    parse_signing_key(text)
    return text


class History(Strict):
    """How much run history to keep."""

    keep_runs: int = Field(default=100, ge=1)
    keep_days: int = Field(default=90, ge=1)


class Webhooks(Strict):
    """The shared secret that forge webhooks are verified with."""

    secret_from: EnvOrFile


class SignedCommits(Strict):
    """Only commits signed by one of these keys are applied."""

    keys: list[Annotated[str, AfterValidator(_check_key)]] = Field(min_length=1)

    def parsed(self) -> list[SigningKey]:
        return [parse_signing_key(k) for k in self.keys]


class SettingsSpec(Strict):
    timezone: str = "UTC"
    exclude: list[str] = Field(default_factory=list)
    sync: Literal["auto", "manual"] = "auto"
    prune: bool = True
    branch: str = "main"
    history: History = Field(default_factory=History)
    webhooks: Webhooks | None = None
    require_signed_commits: SignedCommits | None = None
