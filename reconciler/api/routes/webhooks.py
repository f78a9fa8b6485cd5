"""``POST /api/webhooks/github|gitlab|gitea``: forge deliveries (no API key: the forge's own
signature or token, SPEC section 5).

The body is read here, within the body limit (413 from ``Content-Length`` before reading, and
while streaming), and handed raw to :func:`reconciler.engine.webhooks.receive`, which verifies
the signature before parsing, deduplicates and records the delivery. The answer is 202 at once
(``{"status": "accepted" | "ignored" | "duplicate", "delivery": ID}``); a review's work is done
by the daemon, which this route wakes (``ctx.process_deliveries``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from reconciler.api.context import ApiContext
from reconciler.api.errors import ApiError, error
from reconciler.api.models import error_responses
from reconciler.engine.webhooks import FORGES, receive

log = logging.getLogger("reconciler.http")

_STATUS = {"unauthorized": 401, "bad-request": 400}

_SET_UP = {
    "github": "GitHub: X-Hub-Signature-256 (sha256=HMAC-SHA256 of the body), X-GitHub-Event, "
    "X-GitHub-Delivery",
    "gitlab": "GitLab: X-Gitlab-Token (the secret), X-Gitlab-Event, X-Gitlab-Event-UUID",
    "gitea": "Gitea: X-Gitea-Signature (HMAC-SHA256 of the body), X-Gitea-Event, X-Gitea-Delivery",
}


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes (413 before reading when ``Content-Length`` says
    more, and as soon as the stream passes it); a body cut off by the client is 400."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "bad-request", "Content-Length is not a number")
        if int(declared) > limit:
            raise ApiError(413, "too-large", f"the body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "too-large", f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "bad-request", "the body was cut off") from None
    return b"".join(chunks)


def routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter(responses=error_responses(400, 401, 413))

    def endpoint(forge: str) -> Callable[[Request], Awaitable[Response]]:
        async def deliver(request: Request) -> Response:
            try:
                body = await read_body(request, ctx.body_limit)
            except ApiError as e:
                ctx.telemetry.webhook(forge, e.code)
                return error(e.status, e.code, e.message)
            headers = {k.lower(): v for k, v in request.headers.items()}
            receipt = await run_in_threadpool(
                lambda: receive(ctx.store(), forge, headers, body, ctx.repo, ctx.clock.now())
            )
            ctx.telemetry.webhook(forge, receipt.outcome)
            log.info(
                "%s delivery %s: %s%s",
                forge,
                receipt.delivery or "-",
                receipt.outcome,
                f" ({receipt.message})" if receipt.message else "",
            )
            if receipt.outcome in _STATUS:
                return error(_STATUS[receipt.outcome], receipt.outcome, receipt.message)
            if receipt.reconcile:
                ctx.request_reconcile(f"{forge} push")
            if receipt.pending:
                ctx.process_deliveries()
            return JSONResponse(
                {"status": receipt.outcome, "delivery": receipt.delivery}, status_code=202
            )

        return deliver

    for forge in FORGES:
        router.add_api_route(
            f"/api/webhooks/{forge}",
            endpoint(forge),
            methods=["POST"],
            status_code=202,
            summary=f"A {forge} webhook delivery (push, reviews)",
            description=f"Verified with the shared secret of Settings webhooks.secretFrom. "
            f"{_SET_UP[forge]}. 202 accepted, ignored or duplicate; 401 when the signature or "
            "token is missing or wrong (or no secret is configured); 413 over the body limit; "
            "400 when the body is not a JSON object.",
            tags=["webhooks"],
            responses={
                202: {"description": '{"status": "accepted|ignored|duplicate", "delivery": ID}'},
                400: {"description": "not JSON"},
                401: {"description": "signature or token missing or wrong"},
                413: {"description": "body over the limit"},
            },
        )
    return router
