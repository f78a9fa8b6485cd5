"""Every error answer of the HTTP API is ``{"error": {"code", "message"}}`` (SPEC section 5)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from reconciler.errors import ReconcilerError


class ApiError(Exception):
    """An answer other than 2xx, rendered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


_HTTP_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
}


def install_handlers(app: FastAPI) -> None:
    """Turn every exception a route may raise into the contract's error object."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http-error")
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

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error(exc.status, exc.code, exc.message)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        # a bug: Starlette logs the traceback; the client gets the error object, never a trace
        return error(500, "internal", "internal error (the serve log has the details)")
