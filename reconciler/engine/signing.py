"""``requireSignedCommits``: is a commit signed by a key that the state in force trusts?

Who calls it: the daemon's reconcile pass (:func:`reconciler.engine.reconciling.
reconcile_once`), ``reconciler plan`` and ``reconciler apply``. Reads the applied Settings from
the store; the signature itself is extracted by :mod:`reconciler.sources.git` and verified by
:mod:`reconciler.sources.signatures` (which runs ``ssh-keygen`` or ``gpg``).

Which keys count (:func:`trusted_keys`): those of the Settings *in force* (applied), so a commit
that adds a key must be signed by a key that was trusted before it. When the state in force
does not require signed commits (nothing is applied yet, or it was applied without the
setting), a commit that turns it on is checked against its own keys: the first trusted keys are
taken on first use, and a commit that names keys it is not signed with is refused at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.loading.loader import LoadResult
from reconciler.model.diagnostics import Diagnostic, Severity
from reconciler.model.documents import Settings
from reconciler.model.settings import SettingsSpec, SigningKey, parse_signing_key
from reconciler.planning.plan import SETTINGS_NAME
from reconciler.stores.base import StateStore

if TYPE_CHECKING:
    from reconciler.engine.desired import OpenedSnapshot


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The verdict on one revision: ``required`` False when no signature is asked for;
    ``key`` the signer (as recorded with the applied revision) when it verified; else
    ``diagnostic`` says why the revision cannot be applied."""

    required: bool
    key: str | None = None
    diagnostic: Diagnostic | None = None

    @property
    def ok(self) -> bool:
        return self.diagnostic is None


def _commit_settings(result: LoadResult) -> tuple[SettingsSpec | None, str]:
    """The commit's own Settings (also in a revision with errors) and the file they are in."""
    path = ""
    for ld in result.documents:
        if ld.kind == "Settings" and isinstance(ld.doc, Settings):
            return ld.doc.spec, ld.path
    if result.desired is not None:
        return result.desired.settings, path
    return None, path


def applied_settings(store: StateStore | None) -> SettingsSpec | None:
    if store is None:
        return None
    rec = store.get_object("Settings", SETTINGS_NAME)
    if rec is None:
        return None
    try:
        return Settings.model_validate_json(rec.body).spec
    except ValueError:
        return None


def trusted_keys(
    store: StateStore | None, result: LoadResult
) -> tuple[list[SigningKey], str] | None:
    """The keys a commit must be signed with and where they come from (for messages); None
    when signed commits are not required."""
    in_force = applied_settings(store)
    if in_force is not None and in_force.require_signed_commits is not None:
        keys = [parse_signing_key(k) for k in in_force.require_signed_commits.keys]
        return keys, "the Settings in force"
    own, _ = _commit_settings(result)
    if own is not None and own.require_signed_commits is not None:
        try:
            keys = [parse_signing_key(k) for k in own.require_signed_commits.keys]
        except ValueError:
            return [], "this commit's own Settings (which hold an invalid key)"
        return keys, "this commit's own Settings (none are in force yet)"
    return None


def check_signature(
    source: OpenedSnapshot, result: LoadResult, store: StateStore | None
) -> SignatureCheck:
    """Whether the revision ``source`` was loaded at may be applied under
    ``requireSignedCommits`` (see the module docstring)."""
    from reconciler.sources.signatures import verify

    trusted = trusted_keys(store, result)
    if trusted is None:
        return SignatureCheck(False)
    keys, origin = trusted
    _, path = _commit_settings(result)
    path = path or "reconciler.yaml"

    def refuse(code: str, message: str) -> SignatureCheck:
        return SignatureCheck(
            True, None, Diagnostic(path, 1, 1, Severity.ERROR, code, message, None)
        )

    if source.git is None or result.revision is None:
        return refuse(
            "commit-unverifiable",
            f"requireSignedCommits is set, and {source.description} is not a Git commit, so "
            "there is no signature to verify: apply a Git repository",
        )
    what = f"commit {result.revision[:12]}"
    signed = source.git.commit_signature(result.revision)
    if signed is None:
        return refuse(
            "commit-unsigned",
            f"{what} is not signed, and requireSignedCommits ({origin}) applies only commits "
            "signed by a trusted key; the state in force is unchanged",
        )
    verdict = verify(signed[0], signed[1], keys)
    if not verdict.ok:
        return refuse(
            verdict.code,
            f"{what} cannot be applied: {verdict.message} (requireSignedCommits, keys of "
            f"{origin}); the state in force is unchanged",
        )
    return SignatureCheck(True, verdict.key)
