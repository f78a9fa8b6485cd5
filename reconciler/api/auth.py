"""API keys on requests: where a key is presented and what it may do (SPEC section 5).

A key comes in the ``X-API-Key`` header, as ``Authorization: Bearer KEY`` (what Prometheus
sends with ``authorization: {credentials_file: ...}`` in a scrape config) or, as Otter allows,
``?key=`` in the query, looked for in that order. The lookup and the constant-time comparison
are :func:`reconciler.engine.keys.authenticate`'s.
Use these as FastAPI dependencies: ``Depends(need_read(ctx))``.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.security import APIKeyHeader, APIKeyQuery

from reconciler.api.context import ApiContext
from reconciler.api.errors import ApiError
from reconciler.engine.keys import KeyCache, authenticate, may_read
from reconciler.stores.base import ApiKey

KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="ApiKeyHeader", description="An API key"
)
"""For the OpenAPI schema: routes list it (and :data:`KEY_QUERY`) in ``dependencies``."""
KEY_QUERY = APIKeyQuery(
    name="key", auto_error=False, scheme_name="ApiKeyQuery", description="An API key (Otter)"
)


def presented_key(request: Request) -> str | None:
    """The secret the client presented: ``X-API-Key``, then a Bearer token, then ``?key=``."""
    return (
        request.headers.get("x-api-key")
        or _bearer(request.headers.get("authorization"))
        or request.query_params.get("key")
    )


def _bearer(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer TOKEN`` (the scheme in any case), else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


UNAUTHORIZED = "a valid API key is required (header X-API-Key)"


def need_key(ctx: ApiContext, request: Request, cache: KeyCache | None = None) -> ApiKey:
    """The request's active key; 401 when it is missing, unknown or revoked. With ``cache``,
    a key seen before is taken from it: only for a route whose write checks the key again."""
    presented = presented_key(request)
    key = (
        authenticate(ctx.store(), presented)
        if cache is None
        else cache.authenticate(ctx.store(), presented)
    )
    if key is None:
        raise ApiError(401, "unauthorized", UNAUTHORIZED)
    return key


def need_read(ctx: ApiContext) -> Callable[[Request], ApiKey]:
    """A dependency: a key with the read scope (an approve key may read too)."""

    def dependency(request: Request) -> ApiKey:
        key = need_key(ctx, request)
        if not may_read(key):
            raise ApiError(403, "forbidden", f"API key {key.name} has no read scope")
        return key

    return dependency


def need_approve(ctx: ApiContext) -> Callable[[Request], ApiKey]:
    """A dependency: a key with the approve scope; it acts as its Policy user (``key.user``)."""

    def dependency(request: Request) -> ApiKey:
        key = need_key(ctx, request)
        if "approve" not in key.scopes or not key.user:
            raise ApiError(403, "forbidden", f"API key {key.name} has no approve scope")
        return key

    return dependency
