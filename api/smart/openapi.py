"""What the OpenAPI document says of SMART and bulk export answers that the generic completion
(api.openapi.complete) cannot know: the token endpoint's OAuth errors are plain JSON, a bulk
status is 202 while running (X-Progress, Retry-After), 200 with a JSON manifest, or 500 with an
OperationOutcome when the export failed; files are NDJSON; a kick-off is 400 without
`Prefer: respond-async` and 429 when too many exports run. Applied after `complete`."""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi.spec import OpenAPIHeader as Header
from litestar.openapi.spec import OpenAPIMediaType as MediaType
from litestar.openapi.spec import OpenAPIResponse, OpenAPIType, Operation, Reference, Schema

from api.fhir.bundle import FHIR_JSON

_TEXT = Schema(type=OpenAPIType.STRING)
_OBJECT = Schema(type=OpenAPIType.OBJECT)
_REQUEST_ID = Header(schema=_TEXT, required=True, description="The request's id (also in logs and errors)")
_RETRY = Header(schema=_TEXT, description="Seconds to wait before asking again")
_OUTCOME = {FHIR_JSON: MediaType(schema=Reference("#/components/schemas/OperationOutcome"))}
_OAUTH_ERROR = Schema(
    type=OpenAPIType.OBJECT,
    required=["error"],
    properties={"error": _TEXT, "error_description": _TEXT},
)


def _answer(description: str, content: dict[str, MediaType] | None, **headers: Header) -> OpenAPIResponse:
    return OpenAPIResponse(description=description, content=content, headers={"X-Request-ID": _REQUEST_ID, **headers})


def _operation(app: Litestar, path: str, method: str) -> Operation:
    operation: Operation = getattr((app.openapi_schema.paths or {})[path], method)
    return operation


def document(app: Litestar) -> None:
    token = _operation(app, "/auth/token", "post")
    oauth = {"application/json": MediaType(schema=_OAUTH_ERROR)}
    token.responses = {
        **(token.responses or {}),
        "200": _answer("An access token", {"application/json": MediaType(schema=_OBJECT)}),
        "400": _answer("An OAuth error: invalid_request, invalid_scope, unsupported_grant_type", oauth),
        "401": _answer(
            "An OAuth error: invalid_client",
            oauth,
            **{"WWW-Authenticate": Header(schema=_TEXT, description='Bearer error="invalid_client"')},
        ),
    }
    for path in ("/fhir/$export", "/fhir/Patient/$export", "/fhir/Group/{group_id}/$export"):
        kick = _operation(app, path, "get")
        kick.responses = {
            **(kick.responses or {}),
            "202": _answer("Export queued; poll Content-Location", _OUTCOME,
                           **{"Content-Location": Header(schema=_TEXT, description="The status URL")}),
            "400": _answer("No Prefer: respond-async, or an unsupported parameter, type or format", _OUTCOME),
            "429": _answer("Too many exports of yours are running", _OUTCOME, **{"Retry-After": _RETRY}),
        }  # fmt: skip
    status = _operation(app, "/fhir/bulk/status/{job_id}", "get")
    status.responses = {
        **(status.responses or {}),
        "200": _answer("The manifest of the completed export", {"application/json": MediaType(schema=_OBJECT)}),
        "202": _answer("Still running", None, **{"X-Progress": Header(schema=_TEXT, description="How far it got"),
                                                 "Retry-After": _RETRY}),
        "500": _answer("The export failed", _OUTCOME),
    }  # fmt: skip
    files = _operation(app, "/fhir/bulk/files/{job_id}/{name}", "get")
    files.responses = {
        **(files.responses or {}),
        "200": _answer("One resource per line", {"application/fhir+ndjson": MediaType(schema=_TEXT)}),
    }
    config = _operation(app, "/.well-known/smart-configuration", "get")
    config.responses = {
        **(config.responses or {}),
        "200": _answer("The SMART configuration", {"application/json": MediaType(schema=_OBJECT)}),
    }
