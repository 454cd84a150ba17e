"""FHIR Bundles, search parameters and the CapabilityStatement."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from litestar import Response

from api.fhir.clinical import Resource, instant
from api.fhir.params import TYPES
from api.input_rules import EARLIEST, LATEST
from api.negotiation import NegotiatedResponse
from domain.errors import InvalidInput

FHIR_JSON = "application/fhir+json"
NO_READ = ("Slot", "AuditEvent")  # found by search only
HISTORY = ("Encounter", "Observation", "Condition", "MedicationRequest", "AllergyIntolerance", "Immunization")
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
    document: Resource = {
        "resourceType": "Bundle",
        "type": kind,
        "timestamp": instant(datetime.now(UTC)),
        "link": links,
    }
    if entries:  # FHIR: no empty arrays
        document["entry"] = entries
    return document


SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def subset(resource: Resource, elements: list[str]) -> Resource:
    """_elements: the named top-level elements, with what every resource keeps, tagged SUBSETTED."""
    kept = {k: v for k, v in resource.items() if k in ("resourceType", "id") or k in elements}
    meta = dict(resource.get("meta", {}))
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    kept["meta"] = meta
    return kept


def searchset(
    base: str,
    self_path: str,
    used: list[tuple[str, str]],
    matches: list[Resource],
    *,
    included: list[Resource] = (),  # type: ignore[assignment]
    outcome: Resource | None = None,
    total: int | None = None,
    next_cursor: str | None = None,
    previous_cursor: str | None = None,
) -> Resource:
    """A searchset Bundle: self (the parameters applied), next and previous links, matches, then
    the resources _include and _revinclude brought (mode include), and an OperationOutcome (mode
    outcome) when the server left something out."""
    url = f"{base}{self_path}"
    links = [{"relation": "self", "url": url + (f"?{urlencode(used)}" if used else "")}]
    for relation, cursor in (("next", next_cursor), ("previous", previous_cursor)):
        if cursor is not None:
            links.append({"relation": relation, "url": f"{url}?{urlencode([*used, ('_cursor', cursor)])}"})
    document: Resource = {"resourceType": "Bundle", "type": "searchset", "timestamp": instant(datetime.now(UTC))}
    if total is not None:
        document["total"] = total
    document["link"] = links
    entries = [_entry(base, r, "match") for r in matches] + [_entry(base, r, "include") for r in included]
    if outcome is not None:
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    if entries:
        document["entry"] = entries
    return document


def _entry(base: str, r: Resource, mode: str) -> dict[str, Any]:
    return {"fullUrl": f"{base}/fhir/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": mode}}


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


def capability_statement(base: str) -> Resource:
    """What the server does, generated from the search table (api/fhir/params.py)."""
    resources = []
    for name, t in TYPES.items():
        reads = [] if name in NO_READ else [{"code": "read"}]
        interactions = [*reads, {"code": "search-type"}]
        if name in HISTORY or name in CURRENT_HISTORY:
            interactions.append({"code": "history-instance"})
        resource: dict[str, Any] = {
            "type": name,
            "interaction": interactions,
            "searchParam": [{"name": p.name, "type": p.type, "documentation": p.doc} for p in t.params],
        }
        if t.includes:
            resource["searchInclude"] = list(t.includes)
        if t.revincludes:
            resource["searchRevInclude"] = list(t.revincludes)
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
