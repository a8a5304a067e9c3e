"""Every error the dashboard answers is JSON `{code, message}` with the wire's codes (`hyperhive.wire.errors`), and
an HTTP status that says the same; lower-layer failures (FastAPI's validation, pydantic, Starlette's 404) are mapped
here, once."""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hyperhive.wire.errors import ErrorCode, HiveError

log = logging.getLogger("hive_dashboard")

STATUS = {
    ErrorCode.INVALID_NAME: 400,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.INVALID_BODY: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.NOT_ALLOWED: 403,
    ErrorCode.NOT_MANAGER: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNKNOWN_RECIPIENT: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.INBOX_FULL: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
}
HTTP_CODES = {400: ErrorCode.INVALID_REQUEST, 401: ErrorCode.UNAUTHENTICATED, 403: ErrorCode.NOT_ALLOWED}


class ErrorBody(BaseModel):
    """What every refusal carries (the OpenAPI schema names it for every error status)."""

    code: ErrorCode
    message: str


def error_response(code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(code=code, message=message).model_dump(mode="json")
    return JSONResponse(body, status_code=STATUS.get(code, 500), headers=headers)


def first_problem(exc: ValidationError | RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    return f"Field {where!r}: {first.get('msg', 'is invalid')}."


async def on_hive_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HiveError)
    return error_response(exc.code, exc.message)


async def on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError | RequestValidationError)
    return error_response(ErrorCode.INVALID_REQUEST, first_problem(exc))


async def on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(ErrorCode.NOT_FOUND, f"There is no {request.url.path!r} here.")
    if exc.status_code == 405:
        return error_response(ErrorCode.INVALID_REQUEST, f"{request.method} is not how {request.url.path!r} is used.")
    return error_response(HTTP_CODES.get(exc.status_code, ErrorCode.INTERNAL), str(exc.detail))


async def on_bug(request: Request, exc: Exception) -> Response:
    log.error("path=%s outcome=bug error=%r", request.url.path, exc, exc_info=exc)
    return error_response(ErrorCode.INTERNAL, "Internal error in the dashboard; see its log.")


HANDLERS = {
    HiveError: on_hive_error,
    RequestValidationError: on_validation,
    ValidationError: on_validation,
    HTTPException: on_http,
    Exception: on_bug,
}
