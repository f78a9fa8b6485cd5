"""``POST /api/jobs/trigger``: trigger a template with a key scoped to it (Otter's semantics).

The HTTP side only: it reads the key, the body or the query parameters and the
``Idempotency-Key`` header, and hands them to :func:`reconciler.engine.triggering.trigger`,
which checks and queues the run exactly as ``reconciler run`` does for a live daemon.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from reconciler.api.auth import KEY_HEADER, KEY_QUERY, UNAUTHORIZED, need_key, presented_key
from reconciler.api.context import ApiContext
from reconciler.api.errors import ApiError
from reconciler.api.models import ErrorBody, TriggerAnswer, TriggerBody
from reconciler.engine.keys import KeyCache
from reconciler.engine.triggering import (
    AppliedCache,
    GroupCommit,
    IdempotencyConflict,
    KeyRevoked,
    TemplateNotFound,
    Triggered,
    TriggerForbidden,
    TriggerRequest,
    trigger,
    trigger_kept,
)
from reconciler.model.common import Targets
from reconciler.stores.base import ApiKey

#: Query parameters with a meaning of their own; every other one is a variable.
RESERVED_QUERY = frozenset({"template", "key", "simulate", "at"})

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": what}
    for status, what in (
        (400, "A missing required or unknown variable, a bad value, an unknown target"),
        (401, "No API key, or an unknown or revoked one"),
        (403, "The key may not trigger this template"),
        (404, "No such template in the applied state"),
        (409, "The Idempotency-Key was used for another request"),
        (413, "The body is over the size limit"),
    )
}


def routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["jobs"])
    writer = GroupCommit(ctx.open_store)
    cache = AppliedCache()
    keys = KeyCache()  # each run's write checks its key again (RunCheck)

    @router.post(
        "/api/jobs/trigger",
        summary="Trigger a template (Otter's job orchestration API)",
        status_code=202,
        response_model=TriggerAnswer,
        responses=_ERRORS,
        dependencies=[Security(KEY_HEADER), Security(KEY_QUERY)],
    )
    async def trigger_job(
        request: Request,
        template: Annotated[str, Query(max_length=253, description="The template to run")],
        body: Annotated[TriggerBody | None, Body()] = None,
        simulate: Annotated[
            bool | None, Query(description="true: check mode (also in the body)")
        ] = None,
        at: Annotated[
            AwareDatetime | None,
            Query(description="ISO-8601 instant with offset: a one-off not before it"),
        ] = None,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                pattern=r"^[ -~]{1,255}$",
                description="The same key with the same request within 24 h returns the "
                "first run instead of creating another",
            ),
        ] = None,
    ) -> JSONResponse:
        """Queue a run of TEMPLATE. Variables come as the JSON body's ``variables`` (typed)
        or as query parameters (every parameter but template, key, simulate and at; text,
        converted to each prompt's type as ``reconciler run --var`` does). ``simulate`` is on
        when the query or the body says so; an ``at`` in the body wins over the query's."""
        text_vars = [
            (k, v) for k, v in request.query_params.multi_items() if k not in RESERVED_QUERY
        ]
        given = body or TriggerBody()
        when = given.at if given.at is not None else at  # the body's wins
        req = TriggerRequest(
            template=template,
            variables=given.variables,
            text_variables=text_vars,
            targets=given.targets if body is not None else Targets(),
            simulate=given.simulate or bool(simulate),
            at=when,
            idempotency_key=idempotency_key,
        )
        # a key and a template seen before: checked and written without a thread or a read
        # of the state (the write checks both); else, and for every refusal, in a thread
        key = keys.kept(presented_key(request))
        done = None if key is None else await trigger_kept(key, req, ctx.clock.now(), writer, cache)
        if done is None:
            done = await run_in_threadpool(checked, request, req)
        if not done.replayed:
            ctx.wake_workers()
        run = done.run
        headers = {"Location": f"/api/runs/{run.id}"}
        if done.replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(
            {"run": {"id": run.id, "status": run.status, "url": f"/api/runs/{run.id}"}},
            status_code=202,
            headers=headers,
        )

    def checked(request: Request, req: TriggerRequest) -> Triggered:
        """The trigger with reads of the state: the key, the applied template, the serial."""
        key: ApiKey = need_key(ctx, request, keys)
        try:
            return trigger(ctx.store(), key, req, ctx.clock.now(), writer.write, cache)
        except TriggerForbidden as e:
            raise ApiError(403, "forbidden", str(e)) from None
        except TemplateNotFound as e:
            raise ApiError(404, "not-found", str(e)) from None
        except IdempotencyConflict as e:
            raise ApiError(409, "conflict", str(e)) from None
        except KeyRevoked:
            keys.forget(key.key_hash)
            raise ApiError(401, "unauthorized", UNAUTHORIZED) from None

    return router
