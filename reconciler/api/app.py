"""The HTTP application served by ``reconciler serve`` (FastAPI on uvicorn, in-process).

Routes here: ``GET /healthz`` (no key) and ``GET /api/status``. Every error answer is
``{"error": {"code", "message"}}``. The app reads the state through its own store connection
(``open_store``), never through the loops' connections, so a slow request never delays firing.
Requests are logged by :func:`reconciler.api.app.request_logger` without their query strings
(uvicorn's access log is off: it would print ``?key=`` secrets).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from reconciler.clock import Clock
from reconciler.errors import ReconcilerError
from reconciler.stores.base import StateStore

log = logging.getLogger("reconciler.http")


@dataclass
class Health:
    """What ``/healthz`` reports besides the store: the firing loop's lag."""

    firing_behind: Callable[[], float | None]
    """Seconds the firing loop is behind its earliest due fire time (None: not firing here)."""


class ApiError(Exception):
    """An answer other than 2xx, rendered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(open_store: Callable[[], StateStore], clock: Clock, health: Health) -> FastAPI:
    app = FastAPI(
        title="reconciler",
        description="GitOps reconciler for scheduled infrastructure jobs",
        version="0.1.0",
    )
    local = threading.local()

    def store() -> StateStore:
        s: StateStore | None = getattr(local, "store", None)
        if s is None:
            s = local.store = open_store()
        return s

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
            exc.status_code, "http-error"
        )
        return error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(400, "bad-request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(ReconcilerError)
    async def product_error(request: Request, exc: ReconcilerError) -> Response:
        status = 503 if exc.transient else 400
        return error(status, "unavailable" if exc.transient else "bad-request", str(exc))

    @app.middleware("http")
    async def request_logger(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        log.info(
            "%s %s %d %.1f ms",
            request.method,
            request.url.path,  # never the query string: it may hold ?key=
            response.status_code,
            (time.perf_counter() - start) * 1000,
        )
        return response

    @app.get("/healthz", summary="Liveness and readiness")
    def healthz() -> Response:
        try:
            store().serial()
        except ReconcilerError as e:
            return error(503, "store-unreachable", str(e))
        behind = health.firing_behind()
        if behind is not None and behind > 60:
            return error(503, "firing-behind", f"firing is {behind:.0f} s behind its fire times")
        return JSONResponse({"status": "ok"})

    def reader(request: Request) -> None:
        """Every /api read needs a read (or approve) key: header X-API-Key or ?key=."""
        from reconciler.engine.keys import authenticate, may_read

        presented = request.headers.get("x-api-key") or request.query_params.get("key")
        key = authenticate(store(), presented)
        if key is None:
            raise ApiError(401, "unauthorized", "a valid API key is required (X-API-Key)")
        if not may_read(key):
            raise ApiError(403, "forbidden", f"API key {key.name} has no read scope")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error(exc.status, exc.code, exc.message)

    @app.get(
        "/api/status",
        summary="Applied and attempted revisions, replicas, the run queue",
        dependencies=[Depends(reader)],
    )
    def status() -> dict[str, Any]:
        from reconciler.engine.status import status_json

        return status_json(store(), clock.now())

    return app
