"""API keys: creating them (the secret is shown once, only its hash is stored) and checking a
presented secret against a scope. Called by ``reconciler api-key`` and the HTTP API."""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
from collections.abc import Sequence
from datetime import datetime

from reconciler.errors import UsageError
from reconciler.model.diagnostics import did_you_mean
from reconciler.stores.base import ApiKey, Scope, StateStore, hash_secret

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$")
PREFIX = "rk_"


def new_secret() -> str:
    """A fresh secret: ``rk_`` and 43 URL-safe characters (256 random bits)."""
    return PREFIX + secrets.token_urlsafe(32)


def create_key(
    store: StateStore,
    name: str,
    scopes: Sequence[Scope],
    templates: Sequence[str],
    user: str | None,
    now: datetime,
) -> tuple[ApiKey, str]:
    """Create a key; returns the stored key and its secret (to be shown once)."""
    if not _NAME.match(name):
        raise UsageError(
            f"API key name {name!r}: use lowercase letters, digits, '-', '_' and '.', "
            "at most 63 characters"
        )
    if not scopes:
        raise UsageError("give at least one --scope (trigger, read or approve)")
    if "trigger" in scopes and not templates:
        raise UsageError("a trigger key needs the templates it may trigger: --template NAME")
    if templates and "trigger" not in scopes:
        raise UsageError("--template only applies to a key with --scope trigger")
    if "approve" in scopes:
        if not user:
            raise UsageError("an approve key acts as one Policy user: --user NAME")
        users = _policy_users(store)
        if user not in users:
            hint = did_you_mean(user, users)
            raise UsageError(
                f'"{user}" is not a user of the applied Policy' + (f"; {hint}" if hint else "")
            )
    elif user:
        raise UsageError("--user only applies to a key with --scope approve")
    secret = new_secret()
    key = store.create_api_key(name, secret, scopes, templates, user, now)
    return key, secret


def _policy_users(store: StateStore) -> list[str]:
    names: list[str] = []
    for rec in store.list_objects("Policy"):
        try:
            names.extend(str(u["name"]) for u in json.loads(rec.body)["spec"].get("users", []))
        except (ValueError, KeyError, TypeError):
            continue
    return names


def authenticate(store: StateStore, presented: str | None) -> ApiKey | None:
    """The active key whose secret is ``presented`` (None: missing, unknown or revoked). The
    lookup is by SHA-256; the stored hash is then compared in constant time."""
    if not presented or len(presented) > 512:
        return None
    key = store.find_api_key(presented)
    if key is None or not hmac.compare_digest(key.key_hash, hash_secret(presented)):
        return None
    return key


class KeyCache:
    """Keys found by the hash of their secret, kept so that a hot path (the trigger endpoint)
    does not read the state for every request. A kept key may have been revoked since, so use
    one only where the write that follows checks the key again in its own transaction
    (:class:`~reconciler.stores.base.RunCheck`), and :meth:`forget` it when that check fails.
    An unknown secret is never kept: it is looked up again each time. Safe across threads."""

    def __init__(self, limit: int = 1024) -> None:
        self._limit = limit
        self._keys: dict[str, ApiKey] = {}
        self._lock = threading.Lock()

    def authenticate(self, store: StateStore, presented: str | None) -> ApiKey | None:
        """:func:`authenticate`, from what is kept when the secret was seen before."""
        key = self.kept(presented)
        if key is None:
            key = authenticate(store, presented)
            if key is not None:
                with self._lock:
                    if len(self._keys) >= self._limit:
                        self._keys.clear()
                    self._keys[key.key_hash] = key
        return key

    def kept(self, presented: str | None) -> ApiKey | None:
        """The key of ``presented`` if it is kept (None: not kept, or no such key); never
        reads the state. The kept hash is compared in constant time, as :func:`authenticate`
        compares the stored one."""
        if not presented or len(presented) > 512:
            return None
        digest = hash_secret(presented)
        key = self._keys.get(digest)
        if key is None or not hmac.compare_digest(key.key_hash, digest):
            return None
        return key

    def forget(self, key_hash: str) -> None:
        """Drop a key (its check failed: it was revoked)."""
        with self._lock:
            self._keys.pop(key_hash, None)


def may_read(key: ApiKey) -> bool:
    """Read endpoints: a read key, or an approve key (it acts on what it can see)."""
    return "read" in key.scopes or "approve" in key.scopes


def may_trigger(key: ApiKey, template: str, allowed_keys: Sequence[str] | None) -> str | None:
    """Why ``key`` may not trigger ``template`` (None: it may). ``allowed_keys`` is the
    template's ``apiKeys`` list (None: any trigger key for the template)."""
    if "trigger" not in key.scopes:
        return f"API key {key.name} has no trigger scope"
    if template not in key.templates:
        return f"API key {key.name} may not trigger template {template}"
    if allowed_keys is not None and key.name not in allowed_keys:
        return f"template {template} accepts only the API keys {', '.join(allowed_keys)}"
    return None
