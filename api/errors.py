"""Every error leaves through here: RFC 9457 application/problem+json with a stable `code`, or a
FHIR OperationOutcome under /fhir, always with the request id (body and X-Request-ID) and one
`error_response` log line.

Domain errors carry their code and kind; framework errors (routing, validation, body limits,
content types) are given codes here; anything unexpected becomes a bare 500 that names the
request id and nothing else. The handlers are registered on the app only (no layer overrides
them), so router 404/405, middleware and dependency errors take the same path.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    SerializationException,
    ValidationException,
)
from litestar.params import ParameterKwarg
from litestar.types import ExceptionHandlersMap, Scope

from api.fhir.bundle import FHIR_JSON
from api.fhir.errors import is_fhir_path, outcome
from api.request_id import request_id_of
from domain import constraints
from domain.errors import DomainError, ErrorKind, RateLimited, Unavailable
from infra import outage

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
# Set in the scope when the request's transaction lost a race it may win if run again whole
# (deadlock, serialization failure): api.transaction then retries the request.
RETRY_SCOPE_KEY = "spean.retry"

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
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    426: "Upgrade required",
    428: "Precondition required",
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


class InputRejected(ValidationException):
    """A request value refused while decoding (400), with a stable code and the public field name."""

    def __init__(self, code: str, field: str, message: str, source: str = "body") -> None:
        super().__init__(detail=f"{field}: {message}")
        self.code = code
        self.errors = [FieldError(field, message, source)]

    @classmethod
    def from_msgspec(cls, exc: Exception) -> InputRejected:
        """msgspec names the public field in its message (`... - at `$.rules[0].start``)."""
        error = field_errors(ValidationException(extra=[{"message": str(exc)}]))[0]
        missing = "missing required field" in error.message.lower()
        return cls("missing_field" if missing else "invalid_input", error.field, error.message)


def status_of(exc: Exception) -> int:
    if isinstance(exc, DomainError):
        return http_status(exc)
    if isinstance(exc, HTTPException):
        return exc.status_code
    return 503 if outage.unavailable(exc) is not None else 500


def error_document(
    scope: Scope,
    status: int,
    code: str,
    detail: str | None,
    *,
    errors: list[FieldError] | None = None,
    extra: dict[str, Any] | None = None,
    cause: BaseException | None = None,
) -> tuple[str, Any]:
    """(media type, document) of an error answer, and its one log line: the single place that
    decides what an error looks like, for the exception handlers and the pure-ASGI middlewares."""
    request_id = request_id_of(scope)
    path: str = scope.get("path", "")
    fields = [e.field for e in errors] if errors else None
    (log.error if status >= 500 else log.info)(
        "error_response",
        status=status,
        code=code,
        request_id=request_id,
        path=path,
        method=scope.get("method"),
        fields=fields,
        # An unexpected error's traceback goes in the same line, not a second one.
        **({"exc_info": cause, "error_type": type(cause).__name__} if cause is not None else {}),
    )
    if is_fhir_path(path):
        return FHIR_JSON, outcome(status, code, detail, fields, request_id)
    body = Problem(
        type=f"https://spean.dev/problems/{code.replace('_', '-')}",
        title=_TITLES.get(status, "Error"),
        status=status,
        code=code,
        detail=detail,
        instance=path or None,
        request_id=request_id,
        errors=errors,
        extra=extra or None,
    )
    return PROBLEM_JSON, body


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    detail: str | None,
    *,
    errors: list[FieldError] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    cause: BaseException | None = None,
) -> Response[Any]:
    media_type, body = error_document(request.scope, status, code, detail, errors=errors, extra=extra, cause=cause)
    headers = {**(headers or {}), "X-Request-ID": request_id_of(request.scope)}
    return Response(body, status_code=status, media_type=media_type, headers=headers)


def http_status(exc: DomainError) -> int:
    """The kind's status, unless the error names its own (FHIR's 412 and 428 are conflicts)."""
    own: int | None = getattr(exc, "http_status", None)
    return own or STATUS_BY_KIND[exc.kind]


def _domain(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    status = http_status(exc)
    errors = [FieldError(exc.field, exc.detail)] if exc.field else None
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited | Unavailable) else None
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="spean"'}
    extra = {k: v for k, v in exc.extra.items() if k != "retry_after"} or None
    return problem_response(request, status, exc.code, exc.detail, errors=errors, extra=extra, headers=headers)


_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$")
_MISSING_FIELD = re.compile(r"missing required field `(?P<name>[^`]+)`")
_MISSING_PARAM = re.compile(r"Missing required (?P<kind>\w+) parameter '(?P<name>[^']+)'")


def public_name(request: Request[Any, Any, Any] | None, key: str) -> str:
    """A handler parameter's name as clients write it: `from`, `_count`, not `from_`, `count`."""
    handler = request.scope.get("route_handler") if request is not None else None
    head, dot, rest = key.partition(".")
    field = handler.parsed_fn_signature.parameters.get(head) if handler is not None else None
    kwarg = field.kwarg_definition if field is not None else None
    if isinstance(kwarg, ParameterKwarg) and (alias := kwarg.query or kwarg.header or kwarg.cookie or kwarg.name):
        return f"{alias}{dot}{rest}"
    return key


def field_errors(exc: ValidationException, request: Request[Any, Any, Any] | None = None) -> list[FieldError]:
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
        found.append(FieldError(public_name(request, key) if key else "body", message, item.get("source")))
    return found


def _empty_body(request: Request[Any, Any, Any]) -> bool:
    return request.method in ("POST", "PUT", "PATCH") and request.headers.get("content-length", "0") == "0"


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors = exc.errors if isinstance(exc, InputRejected) else field_errors(exc, request)
    if _empty_body(request) and any(e.source == "body" for e in errors):
        # msgspec reports an absent body as a missing `data` key: say what happened instead.
        detail = "the body is empty: send a JSON document"
        return problem_response(request, 400, "malformed_body", detail, errors=[FieldError("body", detail, "body")])
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
    code = getattr(exc, "code", None) or ("missing_field" if missing else "invalid_input")
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem_response(request, 400, code, detail, errors=errors)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, MethodNotAllowedException) and (exc.headers or {}).get("allow") == "websocket":
        # A plain HTTP request to a WebSocket-only route (/v1/rtc): the router's Allow would name
        # no HTTP method at all; say what the route needs instead.
        needs = "this route speaks WebSocket: open it with an Upgrade request"
        return problem_response(request, 426, "websocket_required", needs, headers={"Upgrade": "websocket"})
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
        if "json" in detail.lower() or isinstance(exc.__cause__, SerializationException):
            # Truncated, empty or otherwise undecodable: one code, whatever the decoder said.
            code = "malformed_body"
            errors = [FieldError("body", detail, "body")]
        elif missing := _MISSING_PARAM.search(detail):
            code = "missing_field"
            errors = [FieldError(missing["name"], f"required {missing['kind']} parameter", missing["kind"])]
    # The framework's own headers stay: Allow on a 405, WWW-Authenticate on a 401.
    headers = {k: v for k, v in (exc.headers or {}).items()}
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="spean"')
    return problem_response(request, status, code, detail, errors=errors, headers=headers or None)


def unavailable_response(request: Request[Any, Any, Any], dependency: outage.Dependency) -> Response[Any]:
    """503 with Retry-After: the client may retry the same request (with its Idempotency-Key)."""
    detail = f"{dependency.name} is unavailable for a moment; retry after {outage.RETRY_AFTER_S} s"
    headers = {"Retry-After": str(outage.RETRY_AFTER_S)}
    return problem_response(request, 503, dependency.code, detail, headers=headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if (dependency := outage.unavailable(exc)) is not None:
        dependency.down(exc)  # logged once per outage, not once per request
        return unavailable_response(request, dependency)
    detail = "something went wrong on our side; it was logged"
    return problem_response(request, 500, "internal_error", detail, cause=exc)


def database_refusal(request: Request[Any, Any, Any], exc: asyncpg.PostgresError) -> DomainError | None:
    """The domain error for what PostgreSQL refused (domain.constraints), flagging a lost race
    for a retry of the whole request; None if it is a bug."""
    error = constraints.domain_error(exc)
    if error is not None:
        log.info("database_refusal", sqlstate=exc.sqlstate, constraint=exc.constraint_name, code=error.code)
        if isinstance(error, Unavailable):
            request.scope[RETRY_SCOPE_KEY] = True  # type: ignore[literal-required]
    return error


def _database(request: Request[Any, Any, Any], exc: asyncpg.PostgresError) -> Response[Any]:
    error = database_refusal(request, exc)
    return _unexpected(request, exc) if error is None else _domain(request, error)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: _domain,
    asyncpg.PostgresError: _database,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _unexpected,
}
