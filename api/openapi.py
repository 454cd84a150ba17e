"""The OpenAPI document, told truthfully: what Litestar derives from the handlers, completed with
what it cannot see.

- Errors: every operation lists the error answers the shared layers can give it (api.errors):
  problem+json with the Problem schema, or an OperationOutcome (application/fhir+json) under /fhir.
- Public routes (`exclude_from_auth`) say `security: []`.
- FHIR successes are application/fhir+json.
- Every answer documents X-Request-ID; 401, 429 and 503 their WWW-Authenticate / Retry-After.
- Links from a created resource to what can be done with it, so a stateful client (or fuzzer) can
  chain calls.
- Types Litestar documents wrongly: wall-clock `time` (documented as a duration) and msgspec
  `array_like` structs (documented as objects, sent as arrays).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.spec import (
    Link,
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)
from litestar.plugins import OpenAPISchemaPlugin
from litestar.routes import HTTPRoute
from litestar.typing import FieldDefinition

from api.errors import PROBLEM_JSON
from api.fhir.bundle import FHIR_JSON
from api.fhir.errors import is_fhir_path
from domain.record.attachments import MEDIA_TYPES as ATTACHMENT_TYPES

__all__ = ["SCHEMA_PLUGINS", "complete"]

_METHODS = ("get", "put", "post", "delete", "patch")
_WRITES = {"post", "put", "patch", "delete"}
_DESCRIPTIONS = {
    400: "Malformed request: a parameter or the body does not decode or validate (`errors` names the fields)",
    401: "No valid bearer token",
    403: "The caller may not do this",
    404: "No such resource (or route)",
    409: "The current state forbids it (e.g. the slot was taken)",
    413: "The body is too large",
    415: "The body is not of a supported content type",
    422: "The request breaks a rule (`code` says which)",
    429: "Too many requests: retry after Retry-After seconds",
    503: "A dependency is unavailable: retry after Retry-After seconds",
}
_REQUEST_ID = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING),
    description="The request's id (echoed when the client sent a well-formed one)",
    required=True,
)
_RETRY_AFTER = OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING), description="Seconds to wait before retrying")
_WWW_AUTHENTICATE = OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING), description="Bearer challenge")

# What a created resource leads to: (method, path) of the creating operation -> the operations
# that take the new resource's id (`$response.body#/id`) as the named path parameter; the other
# path parameters come from the creating request's own path.
_ID = "$response.body#/id"
_LINKS: dict[tuple[str, str], list[tuple[str, str, str]]] = {
    ("post", "/v1/facilities"): [
        ("get", "/v1/facilities/{facility_id}", "facility_id"),
        ("patch", "/v1/facilities/{facility_id}", "facility_id"),
        ("get", "/v1/facilities/{facility_id}/closures", "facility_id"),
        ("post", "/v1/facilities/{facility_id}/closures", "facility_id"),
        ("post", "/v1/facilities/{facility_id}/referral-targets", "facility_id"),
        ("get", "/v1/facilities/{facility_id}/referrals", "facility_id"),
        ("get", "/v1/facilities/{facility_id}/triage-queue", "facility_id"),
        ("get", "/v1/facilities/{facility_id}/audit-events", "facility_id"),
        ("get", "/fhir/Organization/{facility_id}", "facility_id"),
        ("get", "/fhir/Organization/{ident}/_history", "ident"),
        ("get", "/fhir/Location/{facility_id}", "facility_id"),
        ("get", "/fhir/Location/{ident}/_history", "ident"),
    ],
    ("post", "/v1/facilities/{facility_id}/closures"): [
        ("delete", "/v1/facilities/{facility_id}/closures/{exception_id}", "exception_id"),
    ],
    ("post", "/v1/practitioners"): [
        ("get", "/v1/practitioners/{practitioner_id}", "practitioner_id"),
        ("get", "/v1/practitioners/{practitioner_id}/availability", "practitioner_id"),
        ("put", "/v1/practitioners/{practitioner_id}/availability", "practitioner_id"),
        ("get", "/v1/practitioners/{practitioner_id}/exceptions", "practitioner_id"),
        ("post", "/v1/practitioners/{practitioner_id}/exceptions", "practitioner_id"),
        ("get", "/fhir/Practitioner/{practitioner_id}", "practitioner_id"),
        ("get", "/fhir/Practitioner/{ident}/_history", "ident"),
        ("get", "/fhir/Schedule/{practitioner_id}", "practitioner_id"),
        ("get", "/fhir/Schedule/{ident}/_history", "ident"),
    ],
    ("post", "/v1/practitioners/{practitioner_id}/exceptions"): [
        ("delete", "/v1/practitioners/{practitioner_id}/exceptions/{exception_id}", "exception_id"),
    ],
    ("post", "/v1/patients"): [
        ("get", "/v1/patients/{patient_id}", "patient_id"),
        ("patch", "/v1/patients/{patient_id}", "patient_id"),
        ("get", "/v1/patients/{patient_id}/record", "patient_id"),
        ("post", "/v1/patients/{patient_id}/record", "patient_id"),
        ("post", "/v1/patients/{patient_id}/attachments", "patient_id"),
        ("get", "/v1/patients/{patient_id}/consents", "patient_id"),
        ("post", "/v1/patients/{patient_id}/consents", "patient_id"),
        ("post", "/v1/patients/{patient_id}/break-glass", "patient_id"),
        ("get", "/fhir/Patient/{patient_id}", "patient_id"),
        ("get", "/fhir/Patient/{ident}/_history", "ident"),
        ("get", "/fhir/Patient/{patient_id}/$everything", "patient_id"),
    ],
    ("post", "/v1/appointments"): [
        ("get", "/v1/appointments/{appointment_id}", "appointment_id"),
        ("get", "/v1/appointments/{appointment_id}/history", "appointment_id"),
        ("post", "/v1/appointments/{appointment_id}/reschedule", "appointment_id"),
        ("post", "/v1/appointments/{appointment_id}/cancel", "appointment_id"),
        ("post", "/v1/appointments/{appointment_id}/check-in", "appointment_id"),
        ("post", "/v1/appointments/{appointment_id}/complete", "appointment_id"),
        ("post", "/v1/appointments/{appointment_id}/no-show", "appointment_id"),
        ("get", "/fhir/Appointment/{appointment_id}", "appointment_id"),
        ("get", "/fhir/Appointment/{ident}/_history", "ident"),
    ],
    ("post", "/v1/patients/{patient_id}/record"): [
        ("get", "/v1/record/{entry_id}", "entry_id"),
        ("get", "/v1/record/{entry_id}/history", "entry_id"),
        ("post", "/v1/record/{entry_id}/correct", "entry_id"),
        ("post", "/v1/record/{entry_id}/entered-in-error", "entry_id"),
    ],
    ("post", "/v1/patients/{patient_id}/attachments"): [
        ("get", "/v1/record/{entry_id}", "entry_id"),
        ("get", "/v1/record/{entry_id}/content", "entry_id"),
    ],
    ("post", "/v1/patients/{patient_id}/consents"): [
        ("post", "/v1/consents/{consent_id}/revoke", "consent_id"),
        ("get", "/fhir/Consent/{consent_id}", "consent_id"),
        ("get", "/fhir/Consent/{ident}/_history", "ident"),
    ],
    ("post", "/v1/referrals"): [
        ("get", "/v1/referrals/{referral_id}", "referral_id"),
        ("post", "/v1/referrals/{referral_id}/triage", "referral_id"),
        ("post", "/v1/referrals/{referral_id}/cancel", "referral_id"),
        ("post", "/v1/referrals/{referral_id}/acknowledge", "referral_id"),
        ("get", "/fhir/ServiceRequest/{referral_id}", "referral_id"),
        ("get", "/fhir/ServiceRequest/{ident}/_history", "ident"),
    ],
}
_PATH_PARAMETER = re.compile(r"\{([^}]+)\}")


class WallClockTimeSchema(OpenAPISchemaPlugin):
    """A `datetime.time` is a local wall-clock time on the wire ("08:00:00"), not a duration."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return value is dt.time

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        return Schema(
            type=OpenAPIType.STRING,
            pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$",
            description="Local wall-clock time, HH:MM[:SS]",
            examples=["08:00:00"],
        )


class ArrayLikeStructSchema(OpenAPISchemaPlugin):
    """A msgspec Struct with `array_like=True` travels as a fixed-length array of its fields."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return (
            isinstance(value, type) and issubclass(value, msgspec.Struct) and bool(value.__struct_config__.array_like)
        )

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        fields = msgspec.structs.fields(field_definition.annotation)
        items = [schema_creator.for_field_definition(FieldDefinition.from_annotation(f.type)) for f in fields]
        # `prefixItems` would say which position holds what, but not every OpenAPI tool reads it
        # (schemathesis rejects the schema): each item is one of the fields, in the described order.
        return Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(any_of=items),
            min_items=len(items),
            max_items=len(items),
            description=f"[{', '.join(f.encode_name for f in fields)}]",
        )


SCHEMA_PLUGINS = [WallClockTimeSchema(), ArrayLikeStructSchema()]

_STRING = Schema(type=OpenAPIType.STRING)
_PROBLEM = Schema(
    type=OpenAPIType.OBJECT,
    required=["type", "title", "status", "code", "request_id"],
    properties={
        "type": _STRING,
        "title": _STRING,
        "status": Schema(type=OpenAPIType.INTEGER),
        "code": Schema(type=OpenAPIType.STRING, description="Stable machine-readable error code"),
        "detail": _STRING,
        "instance": _STRING,
        "request_id": _STRING,
        "errors": Schema(type=OpenAPIType.ARRAY, items=Reference("#/components/schemas/FieldError")),
        "extra": Schema(type=OpenAPIType.OBJECT),
    },
    description="RFC 9457 problem details",
)
_FIELD_ERROR = Schema(
    type=OpenAPIType.OBJECT,
    required=["field", "message"],
    properties={"field": _STRING, "message": _STRING, "source": _STRING},
)
_OPERATION_OUTCOME = Schema(
    type=OpenAPIType.OBJECT,
    required=["resourceType", "issue"],
    properties={
        "resourceType": Schema(const="OperationOutcome"),
        "issue": Schema(
            type=OpenAPIType.ARRAY,
            min_items=1,
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["severity", "code"],
                properties={"severity": _STRING, "code": _STRING, "details": Schema(type=OpenAPIType.OBJECT)},
            ),
        ),
        "extension": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT)),
    },
    description="FHIR R4 OperationOutcome; issue[0].details.coding[0].code is the stable error code",
)


def complete(app: Litestar) -> None:
    """Complete the app's OpenAPI document in place (called once, after all routes are registered)."""
    openapi = app.openapi_schema
    assert openapi.components.schemas is not None
    openapi.components.schemas.update(
        {"Problem": _PROBLEM, "FieldError": _FIELD_ERROR, "OperationOutcome": _OPERATION_OUTCOME}
    )
    public = _public_operations(app)
    _document_forms(app)
    # The raw-bytes routes read their body themselves: say what they take (the file, as its type).
    raw = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
    for raw_path in ("/v1/patients/{patient_id}/attachments", "/v1/appointments/{appointment_id}/files"):
        upload = (openapi.paths or {})[raw_path].post
        assert upload is not None
        upload.request_body = RequestBody(
            content={media_type: OpenAPIMediaType(schema=raw) for media_type in ATTACHMENT_TYPES},
            description="the file itself, its type as Content-Type (its first bytes must match it)",
            required=True,
        )
    download = (openapi.paths or {})["/v1/record/{entry_id}/content"].get
    assert download is not None
    assert download.responses is not None
    sent = download.responses["200"]
    assert isinstance(sent, OpenAPIResponse)
    sent.content = {media_type: OpenAPIMediaType(schema=raw) for media_type in ATTACHMENT_TYPES}  # sent as attached
    operation_ids: dict[tuple[str, str], str] = {}
    for path, item in (openapi.paths or {}).items():
        for method in _METHODS:
            operation: Operation | None = getattr(item, method)
            if operation is None:
                continue
            if operation.operation_id:
                operation_ids[(method, path)] = operation.operation_id
            is_public = (method, path) in public
            if is_public:
                operation.security = []
            _complete_operation(path, method, operation, is_public)
    for (method, path), targets in _LINKS.items():
        source = getattr((openapi.paths or {})[path], method)
        source.responses["201"].links = {
            operation_ids[(target_method, target)]: Link(
                operation_id=operation_ids[(target_method, target)],
                parameters={
                    name: _ID if name == created else f"$request.path.{name}"
                    for name in _PATH_PARAMETER.findall(target)
                },
            )
            for target_method, target, created in targets
        }


def _document_forms(app: Litestar) -> None:
    """Handlers that read a signed form themselves (webhooks: the signature covers the raw fields,
    so it is checked before any decoding) name its schema in opt `form_body`."""
    paths = app.openapi_schema.paths or {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            schema = handler.opt.get("form_body")
            if schema is None:
                continue
            for method in handler.http_methods:
                operation: Operation = getattr(paths[route.path_format or "/"], method.lower())
                operation.request_body = RequestBody(
                    content={"application/x-www-form-urlencoded": OpenAPIMediaType(schema=schema)}, required=True
                )
                operation.parameters = [
                    *(operation.parameters or []),
                    Parameter(
                        name="X-Twilio-Signature",
                        param_in="header",
                        required=True,
                        schema=Schema(type=OpenAPIType.STRING),
                        description="Twilio's signature of the URL and form (a request without a valid one is a 403)",
                    ),
                ]


def _public_operations(app: Litestar) -> set[tuple[str, str]]:
    return {
        (method.lower(), route.path_format or "/")
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if handler.opt.get("exclude_from_auth")
        for method in handler.http_methods
    }


def error_statuses(path: str, method: str, operation: Operation, public: bool) -> set[int]:
    """The error answers an operation can give, from the layers every request passes through."""
    statuses = {503}  # the database or Redis is away
    has_body = operation.request_body is not None
    if operation.parameters or has_body or method == "post":
        statuses.add(400)  # undecodable parameters or body; a malformed Idempotency-Key
    if not public:
        statuses |= {401, 403, 404, 422}  # token, access rules, lookups, domain rules and X-Client-Channel
    elif path.startswith("/v1/sms/"):
        statuses |= {403, 422}  # unsigned or forged (or no TWILIO_AUTH_TOKEN); a field breaks a rule
    elif path.startswith("/v1/auth/"):
        statuses |= {401, 422, 429}  # bad code or refresh token; code requests are rate limited
    elif path == "/v1/ussd":
        statuses.add(403)  # the gateway's shared secret is missing or wrong
    elif path == "/v1/invitations/open":
        # A guest's link: revoked; unknown; used elsewhere, expired or too early; opened too often.
        statuses |= {403, 404, 409, 429}
    elif path in ("/v1/invitations/ice-servers", "/v1/invitations/echo"):
        # The pre-call check with an opened link: not this browser's; revoked; room closed; a bad offer.
        statuses |= {401, 403, 409, 422}
    if method in _WRITES and not public:
        statuses.add(409)  # state conflicts; an Idempotency-Key still in flux
    if method in _WRITES:
        statuses |= {413, 415} if has_body or method == "post" else {413}
    if path in ("/health", "/metrics"):
        statuses.discard(503)  # answered without touching a dependency
    return statuses


def _complete_operation(path: str, method: str, operation: Operation, public: bool) -> None:
    fhir = is_fhir_path(path)
    responses = operation.responses if operation.responses is not None else {}
    for response in responses.values():
        if isinstance(response, OpenAPIResponse):
            if fhir and response.content and "application/json" in response.content:
                response.content = {FHIR_JSON: response.content["application/json"]}
            response.headers = {**(response.headers or {}), "X-Request-ID": _REQUEST_ID}
    media_type, schema = (FHIR_JSON, "OperationOutcome") if fhir else (PROBLEM_JSON, "Problem")
    for status in sorted(error_statuses(path, method, operation, public)):
        if str(status) in responses and status != 400:
            # The handler documents this answer itself (e.g. /ready's 503 is its Health report);
            # Litestar's own 400 is replaced, as it describes a body this API never sends.
            continue
        headers: dict[str, OpenAPIHeader | Reference] = {"X-Request-ID": _REQUEST_ID}
        if status in (429, 503):
            headers["Retry-After"] = _RETRY_AFTER
        if status == 401:
            headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
        responses[str(status)] = OpenAPIResponse(
            description=_DESCRIPTIONS[status],
            content={media_type: OpenAPIMediaType(schema=Reference(f"#/components/schemas/{schema}"))},
            headers=headers,
        )
    operation.responses = responses
