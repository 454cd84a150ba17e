"""FHIR Bundles, search parameters and the CapabilityStatement."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from litestar import Response

from api.fhir.clinical import Resource, instant
from api.input_rules import EARLIEST, LATEST
from api.negotiation import NegotiatedResponse
from domain.errors import InvalidInput

FHIR_JSON = "application/fhir+json"
SEARCHABLE = {
    "Patient": ["identifier", "name", "phone", "birthdate", "_count"],
    "Encounter": ["patient", "date", "status", "_count", "_lastUpdated"],
    "Observation": ["patient", "date", "status", "_count", "_lastUpdated"],
    "Condition": ["patient", "date", "status", "_count", "_lastUpdated"],
    "MedicationRequest": ["patient", "date", "status", "_count", "_lastUpdated"],
    "Consent": ["patient"],
    "Practitioner": ["name", "_count"],
    "Organization": ["name", "type", "_count"],
    "Appointment": ["patient", "practitioner", "actor", "date", "status", "_count"],
    "ServiceRequest": ["patient", "status", "_count"],
    "Provenance": ["patient", "_count"],
    "Location": ["name", "_count"],
    "Schedule": ["actor", "_count"],
    "Slot": ["schedule", "start", "_count"],
    "AuditEvent": ["site", "_count"],
}
_PARAM_TYPES = {
    "_count": "number",
    "date": "date",
    "birthdate": "date",
    "_lastUpdated": "date",
    "patient": "reference",
    "identifier": "token",
    "status": "token",
    "site": "token",
    "schedule": "reference",
    "practitioner": "reference",
    "actor": "reference",
    "type": "token",
    "start": "date",
}
NO_READ = ("Slot", "AuditEvent")  # found by search only
HISTORY = ("Encounter", "Observation", "Condition", "MedicationRequest")
# Types whose _history is their current version only (no past versions are stored; see current.py).
CURRENT_HISTORY = (
    "Patient", "Practitioner", "Organization", "Location", "Schedule", "Appointment", "ServiceRequest", "Consent",
)  # fmt: skip


def fhir(resource: Resource, status_code: int = 200) -> Response[Any]:
    # Negotiated like every answer, so instants follow the one rule (api.negotiation).
    return NegotiatedResponse(content=resource, media_type=FHIR_JSON, status_code=status_code)


def bundle(
    base: str,
    kind: str,
    resources: list[Resource],
    *,
    self_path: str,
    params: dict[str, Any] | None = None,
    next_params: dict[str, Any] | None = None,
) -> Resource:
    """A searchset or history Bundle; `next_params` (when more may follow) makes the next link."""
    params = {k: v for k, v in (params or {}).items() if v is not None}
    links = [
        {"relation": "self", "url": f"{base}{self_path}" + (f"?{urlencode(params, doseq=True)}" if params else "")}
    ]
    if next_params is not None:
        query = urlencode({**params, **next_params}, doseq=True)
        links.append({"relation": "next", "url": f"{base}{self_path}?{query}"})
    entries = []
    for r in resources:
        entry: dict[str, Any] = {"fullUrl": f"{base}/fhir/{r['resourceType']}/{r['id']}", "resource": r}
        if kind == "searchset":
            entry["search"] = {"mode": "match"}
        else:
            entry["request"] = {
                "method": "POST" if r["meta"]["versionId"] == "1" else "PUT",
                "url": f"{r['resourceType']}/{r['id']}",
            }
            entry["response"] = {"status": "200", "lastModified": r["meta"]["lastUpdated"]}
        entries.append(entry)
    return {
        "resourceType": "Bundle",
        "type": kind,
        "timestamp": instant(datetime.now(UTC)),
        "link": links,
        "entry": entries,
    }


_FHIR_DATE = re.compile(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?")


def fhir_date(value: str | None, field: str) -> str | None:
    """A FHIR `date` (YYYY, YYYY-MM or YYYY-MM-DD) that exists in the supported calendar."""
    if value is None:
        return None
    padded = value + "-01-01"[len(value) - 4 :] if _FHIR_DATE.fullmatch(value) else ""
    try:
        day = date.fromisoformat(padded)
    except ValueError:  # 2026-02-30, 0000-00-00, or not a date at all
        raise InvalidInput("invalid_date", f"{field} takes YYYY, YYYY-MM or YYYY-MM-DD", field=field) from None
    if not EARLIEST <= day <= LATEST:
        raise InvalidInput("out_of_range", f"{field} is between {EARLIEST} and {LATEST}", field=field)
    return value


def date_bounds(values: list[str] | None, field: str) -> tuple[datetime | None, datetime | None]:
    """FHIR date prefixes ge/gt (from) and le/lt (to) on dates or instants; a bare value is ge."""
    low = high = None
    for raw in values or []:
        prefix, value = (raw[:2], raw[2:]) if raw[:2] in ("ge", "gt", "le", "lt", "eq") else ("ge", raw)
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                "invalid_date", f"{field} takes [ge|gt|le|lt]YYYY-MM-DD[Thh:mm:ssZ]", field=field
            ) from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if not EARLIEST <= moment.date() <= LATEST:  # date arithmetic on the calendar's edge overflows
            raise InvalidInput("out_of_range", f"{field} is between {EARLIEST} and {LATEST}", field=field)
        if prefix in ("ge", "gt", "eq"):
            low = moment
        else:
            high = moment
    return low, high


def capability_statement(base: str) -> Resource:
    resources = []
    for name, params in SEARCHABLE.items():
        reads = [] if name in NO_READ else [{"code": "read"}]
        interactions = [*reads, *([{"code": "search-type"}] if params else [])]
        if name in HISTORY or name in CURRENT_HISTORY:
            interactions.append({"code": "history-instance"})
        resource: dict[str, Any] = {
            "type": name,
            "interaction": interactions,
            "searchParam": [{"name": p, "type": _PARAM_TYPES.get(p, "string")} for p in params],
        }
        if name == "Patient":
            resource["operation"] = [
                {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}
            ]
        resources.append(resource)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "publisher": "Spean",
        "kind": "instance",
        "software": {"name": "Spean", "version": "0.1.0"},
        "implementation": {"description": "Spean shared patient record", "url": f"{base}/fhir"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "Bearer access tokens as for the app API; clinical reads need consent",
                },
                "resource": resources,
            }
        ],
    }
