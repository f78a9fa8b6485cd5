"""``GET /api/approvals`` (read key) and ``POST /api/schedules/{name}/approve|deny|dry-run``
(approve key, acting as its Policy user).

The decisions are :mod:`reconciler.engine.approving`'s, the path the CLI and forge reviews
take too. A refusal is ``{"error": {"code", "message"}}``: 404 ``not-found`` (no such applied
schedule), 403 ``not-eligible`` (the key's user may not decide: not an approver, no
``approve`` in the Policy in force, an author of the change), 409 ``no-approval``,
``denied`` or ``past-due`` (an ``at:`` whose time passed: ``?force=true``).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from reconciler.api.auth import need_approve, need_read
from reconciler.api.context import ApiContext
from reconciler.api.errors import ApiError
from reconciler.api.models import error_responses
from reconciler.engine.approving import ApprovalRefused, ReviewResult
from reconciler.stores.base import ApiKey

_STATUS = {
    "unknown-schedule": (404, "not-found"),
    "not-eligible": (403, "not-eligible"),
    "no-approval": (409, "no-approval"),
    "denied": (409, "denied"),
    "past-due": (409, "past-due"),
}


class DenyBody(BaseModel):
    """The optional body of a denial."""

    reason: str | None = Field(default=None, max_length=2000)


def _refused(e: ApprovalRefused) -> ApiError:
    status, code = _STATUS.get(e.kind, (409, "conflict"))
    return ApiError(status, code, str(e))


def _answer(result: ReviewResult) -> dict[str, Any]:
    return {
        "schedule": result.schedule,
        "recorded": result.recorded,
        "state": result.state,
        "message": result.message,
    }


def routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["approvals"], responses=error_responses(400, 401, 403, 404, 409))
    approver = need_approve(ctx)

    @router.get(
        "/api/approvals",
        summary="The approval queue (the approvals object of the CLI)",
        dependencies=[Depends(need_read(ctx))],
    )
    def queue() -> dict[str, Any]:
        from reconciler.engine.approving import approval_queue

        return {"approvals": [e.to_json() for e in approval_queue(ctx.store())]}

    @router.post(
        "/api/schedules/{name}/approve",
        summary="Approve the applied content of a schedule as the key's user",
    )
    def approve(
        name: str,
        key: Annotated[ApiKey, Depends(approver)],
        force: Annotated[
            bool, Query(description="approve an at: whose time passed; it runs now")
        ] = False,
    ) -> dict[str, Any]:
        from reconciler.engine.approving import decide

        assert key.user is not None
        try:
            result = decide(
                ctx.store(), name, key.user, "approve", "api", ctx.clock.now(), force=force
            )
        except ApprovalRefused as e:
            raise _refused(e) from None
        return _answer(result)

    @router.post(
        "/api/schedules/{name}/deny",
        summary="Deny the applied content of a schedule as the key's user",
    )
    def deny(
        name: str,
        key: Annotated[ApiKey, Depends(approver)],
        reason: Annotated[
            str | None, Query(max_length=2000, description="why (or in the body)")
        ] = None,
        body: Annotated[DenyBody | None, Body()] = None,
    ) -> dict[str, Any]:
        from reconciler.engine.approving import decide

        assert key.user is not None
        why = reason if reason is not None else (body.reason if body is not None else None)
        try:
            result = decide(ctx.store(), name, key.user, "deny", "api", ctx.clock.now(), reason=why)
        except ApprovalRefused as e:
            raise _refused(e) from None
        return _answer(result)

    @router.post(
        "/api/schedules/{name}/dry-run",
        summary="Queue a simulate run of a schedule without approving it",
        status_code=202,
    )
    def dry_run(name: str, key: Annotated[ApiKey, Depends(approver)]) -> JSONResponse:
        from reconciler.engine.approving import dry_run as queue_dry_run

        try:
            run = queue_dry_run(ctx.store(), name, "api", f"api-key:{key.name}", ctx.clock.now())
        except ApprovalRefused as e:
            raise _refused(e) from None
        ctx.wake_workers()
        return JSONResponse(
            {"run": {"id": run.id, "status": run.status, "url": f"/api/runs/{run.id}"}},
            status_code=202,
        )

    return router
