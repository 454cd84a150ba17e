"""Errors on /fhir leave as FHIR OperationOutcome resources (what FHIR clients parse), carrying
the same stable code as the app API's problem+json in issue.details.coding."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.exceptions import ValidationException
from litestar.types import ExceptionHandlersMap

from api.errors import EXCEPTION_HANDLERS, STATUS_BY_KIND, InputRejected, database_refusal, field_errors
from api.fhir.bundle import FHIR_JSON
from domain.errors import DomainError, ErrorKind

PROBLEMS = "https://spean.dev/problems"
_ISSUE_TYPE = {
    ErrorKind.INVALID: "invalid",
    ErrorKind.UNAUTHENTICATED: "login",
    ErrorKind.FORBIDDEN: "forbidden",
    ErrorKind.NOT_FOUND: "not-found",
    ErrorKind.CONFLICT: "conflict",
    ErrorKind.RATE_LIMITED: "throttled",
    ErrorKind.UNAVAILABLE: "transient",
}


def outcome(issue_type: str, code: str, detail: str, field: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": "error",
        "code": issue_type,
        "details": {"coding": [{"system": PROBLEMS, "code": code}], "text": detail},
    }
    if field:
        issue["expression"] = [field]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _domain(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    body = outcome(_ISSUE_TYPE[exc.kind], exc.code, exc.detail, exc.field)
    headers = {"Retry-After": str(exc.extra["retry_after"])} if "retry_after" in exc.extra else None
    return Response(body, status_code=STATUS_BY_KIND[exc.kind], media_type=FHIR_JSON, headers=headers)


def _database(request: Request[Any, Any, Any], exc: asyncpg.PostgresError) -> Response[Any]:
    error = database_refusal(request, exc)
    if error is None:
        return EXCEPTION_HANDLERS[Exception](request, exc)  # a bug: the app's bare 500
    return _domain(request, error)


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors = exc.errors if isinstance(exc, InputRejected) else field_errors(exc, request)
    code = getattr(exc, "code", None) or "bad_request"
    field = errors[0].field if errors else None
    return Response(outcome("invalid", code, str(exc.detail), field), status_code=400, media_type=FHIR_JSON)


FHIR_EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: _domain,
    asyncpg.PostgresError: _database,
    ValidationException: _validation,
}


def code_of(body: dict[str, Any]) -> str:
    """The stable code of an OperationOutcome this server wrote (for clients and tests)."""
    code: str = body["issue"][0]["details"]["coding"][0]["code"]
    return code
