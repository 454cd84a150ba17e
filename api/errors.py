"""Every error leaves as RFC 9457 application/problem+json with a stable machine-readable `code`.

Domain errors carry their code and kind; framework errors (validation, routing) are given codes
here; anything unexpected becomes a bare 500 that names the request id and nothing else.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.types import ExceptionHandlersMap

from domain.errors import DomainError, ErrorKind, RateLimited
from infra import outage

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

STATUS_BY_KIND: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 422,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.UNAVAILABLE: 503,
}

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class FieldError(msgspec.Struct, omit_defaults=True):
    field: str
    message: str
    source: str | None = None


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None
    extra: dict[str, Any] | None = None


def status_of(exc: Exception) -> int:
    if isinstance(exc, DomainError):
        return STATUS_BY_KIND[exc.kind]
    if isinstance(exc, HTTPException):
        return exc.status_code
    return 503 if outage.unavailable(exc) is not None else 500


def problem_response(
    request: Request[Any, Any, Any] | None,
    status: int,
    code: str,
    detail: str | None,
    *,
    errors: list[FieldError] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    request_id = request.scope.get("state", {}).get("request_id") if request is not None else None
    body = Problem(
        type=f"https://spean.dev/problems/{code.replace('_', '-')}",
        title=_TITLES.get(status, "Error"),
        status=status,
        code=code,
        detail=detail,
        instance=request.url.path if request is not None else None,
        request_id=request_id,
        errors=errors,
        extra=extra or None,
    )
    if request_id:
        headers = {**(headers or {}), "X-Request-ID": request_id}
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _domain(request: Request[Any, Any, Any], exc: DomainError) -> Response[Problem]:
    status = STATUS_BY_KIND[exc.kind]
    errors = [FieldError(exc.field, exc.detail)] if exc.field else None
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else None
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="spean"'}
    extra = {k: v for k, v in exc.extra.items() if k != "retry_after"} or None
    return problem_response(request, status, exc.code, exc.detail, errors=errors, extra=extra, headers=headers)


_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$")
_MISSING_FIELD = re.compile(r"missing required field `(?P<name>[^`]+)`")
_MISSING_PARAM = re.compile(r"Missing required (?P<kind>\w+) parameter '(?P<name>[^']+)'")


def _field_errors(exc: ValidationException) -> list[FieldError]:
    found: list[FieldError] = []
    items = exc.extra if isinstance(exc.extra, list) else []
    for item in items:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        key = str(item.get("key", "") or "")
        match = _MSGSPEC_PATH.match(message)
        if match and match["path"]:
            message = match["msg"]
            key = match["path"].lstrip(".") or key
        missing = _MISSING_FIELD.search(message)
        if missing:  # msgspec names the absent field in the message, not in the path
            key = ".".join(filter(None, [key if key not in ("data", "body") else "", missing["name"]]))
        found.append(FieldError(key or "body", message, item.get("source")))
    return found


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
    errors = _field_errors(exc)
    if not errors:
        # Litestar reports a missing parameter or an undecodable body as a bare message.
        detail = exc.detail or ""
        if param := _MISSING_PARAM.search(detail):
            errors = [FieldError(param["name"], f"required {param['kind']} parameter", param["kind"])]
        else:
            match = _MSGSPEC_PATH.match(detail)
            field = (match["path"] or "").lstrip(".") if match and match["path"] else "body"
            errors = [FieldError(field or "body", match["msg"] if match else "malformed body", "body")]
    missing = any("required" in e.message.lower() or "missing" in e.message.lower() for e in errors)
    code = "missing_field" if missing else "invalid_input"
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem_response(request, 400, code, detail, errors=errors)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    codes: dict[type[HTTPException], str] = {
        NotFoundException: "route_not_found",
        MethodNotAllowedException: "method_not_allowed",
        NotAuthorizedException: "unauthenticated",
        PermissionDeniedException: "forbidden",
    }
    code = codes.get(type(exc))
    if code is None:
        code = {400: "bad_request", 413: "payload_too_large", 415: "unsupported_media_type"}.get(status, "http_error")
    detail = exc.detail if status < 500 else None
    errors = None
    if status == 400 and detail:
        if "json" in detail.lower():
            code = "malformed_body"
        elif missing := _MISSING_PARAM.search(detail):
            code = "missing_field"
            errors = [FieldError(missing["name"], f"required {missing['kind']} parameter", missing["kind"])]
    return problem_response(request, status, code, detail, errors=errors)


def unavailable_response(request: Request[Any, Any, Any] | None, dependency: outage.Dependency) -> Response[Problem]:
    """503 with Retry-After: the client may retry the same request (with its Idempotency-Key)."""
    detail = f"{dependency.name} is unavailable for a moment; retry after {outage.RETRY_AFTER_S} s"
    headers = {"Retry-After": str(outage.RETRY_AFTER_S)}
    return problem_response(request, 503, dependency.code, detail, headers=headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    if (dependency := outage.unavailable(exc)) is not None:
        dependency.down(exc)  # logged once per outage, not once per request
        return unavailable_response(request, dependency)
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return problem_response(request, 500, "internal_error", "something went wrong on our side; it was logged")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: _domain,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _unexpected,
}
