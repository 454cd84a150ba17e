"""How an error reads under /fhir: a FHIR OperationOutcome (what FHIR clients parse), carrying the
same stable code as the app API's problem+json in issue.details.coding and the request id in an
extension. api.errors decides status and code for both; this module only shapes the document."""

from __future__ import annotations

import re
from typing import Any

PROBLEMS = "https://spean.dev/problems"
REQUEST_ID_EXTENSION = "https://spean.dev/fhir/StructureDefinition/request-id"
_ISSUE_TYPE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "invalid",
    428: "required",
    429: "throttled",
    503: "transient",
}


# FHIR strings hold no control characters but tab, CR and LF; an error may quote input that
# does (a NUL in a field name), shown as U+FFFD so the OperationOutcome stays valid FHIR.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _text(value: str) -> str:
    return _CONTROL.sub("\ufffd", value)


def is_fhir_path(path: str) -> bool:
    return path == "/fhir" or path.startswith("/fhir/")


def outcome(
    status: int, code: str, detail: str | None, fields: list[str] | None = None, request_id: str | None = None
) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": "error" if status < 500 else "fatal",
        "code": _ISSUE_TYPE.get(status, "exception"),
        "details": {"coding": [{"system": PROBLEMS, "code": code}], "text": _text(detail or code)},
    }
    if fields:
        issue["expression"] = [_text(f) for f in fields]
    document: dict[str, Any] = {"resourceType": "OperationOutcome", "issue": [issue]}
    if request_id:
        document["extension"] = [{"url": REQUEST_ID_EXTENSION, "valueString": request_id}]
    return document


def code_of(body: dict[str, Any]) -> str:
    """The stable code of an OperationOutcome this server wrote (for clients and tests)."""
    code: str = body["issue"][0]["details"]["coding"][0]["code"]
    return code
