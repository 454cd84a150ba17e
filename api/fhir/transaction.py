"""FHIR transaction Bundles: create a Patient and Observations in one go, all or nothing.

The request's single database transaction makes it atomic: any entry refused rolls back every
entry before it. References between entries use the entries' `fullUrl` (urn:uuid:...), as FHIR
transactions do; an existing patient is referenced as Patient/{id}. Only POST of Patient and
Observation is accepted; the observation rules are the record's (LOINC catalogue, UCUM, ranges).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from api.fhir.clinical import Resource
from domain import patients
from domain.errors import InvalidInput
from domain.principal import Principal
from domain.record import service as record
from domain.record.types import Component, ObservationIn
from infra.db import Connection

_LANGS = {"km", "vi", "fr", "en"}


def _bad(index: int, detail: str) -> InvalidInput:
    return InvalidInput("invalid_bundle_entry", detail, field=f"entry[{index}]")


def _patient_in(resource: Resource, index: int, default_facility: uuid.UUID | None) -> patients.PatientIn:
    names = [
        patients.HumanName(
            text=n.get("text") or " ".join([*n.get("given", []), n.get("family", "")]).strip(),
            family=n.get("family"),
            given=n.get("given", []),
        )
        for n in resource.get("name", [])
    ]
    organization = resource.get("managingOrganization", {}).get("reference", "")
    try:
        facility = uuid.UUID(organization.removeprefix("Organization/")) if organization else default_facility
    except ValueError:
        raise _bad(index, "managingOrganization must be Organization/{id}") from None
    if facility is None:
        raise _bad(index, "give managingOrganization (the patient's home facility)")
    birth = resource.get("birthDate")
    phones = [t["value"] for t in resource.get("telecom", []) if t.get("system") == "phone"]
    return patients.PatientIn(
        names=names,
        home_facility_id=facility,
        birth_date=date.fromisoformat(birth) if birth and len(birth) == 10 else None,
        birth_year=int(birth[:4]) if birth else None,
        sex=resource.get("gender", "unknown"),
        phone=phones[0] if phones else None,
        identifiers=[patients.Identifier(i["system"], i["value"]) for i in resource.get("identifier", [])],
    )


def _quantity(q: dict[str, Any], index: int) -> tuple[float, str]:
    if "value" not in q or not (q.get("code") or q.get("unit")):
        raise _bad(index, "valueQuantity needs a value and a UCUM code")
    return float(q["value"]), str(q.get("code") or q.get("unit"))


def _loinc(concept: dict[str, Any], index: int) -> str:
    for coding in concept.get("coding", []):
        if coding.get("system") == "http://loinc.org" and coding.get("code"):
            return str(coding["code"])
    raise _bad(index, "code must carry a LOINC coding")


def _observation_in(resource: Resource, index: int) -> ObservationIn:
    value = unit = None
    if "valueQuantity" in resource:
        value, unit = _quantity(resource["valueQuantity"], index)
    components = None
    if "component" in resource:
        components = []
        for c in resource["component"]:
            c_value, c_unit = _quantity(c.get("valueQuantity", {}), index)
            components.append(Component(code=_loinc(c.get("code", {}), index), value=c_value, unit=c_unit))
    effective = resource.get("effectiveDateTime")
    return ObservationIn(
        code=_loinc(resource.get("code", {}), index),
        value=value,
        unit=unit,
        components=components,
        effective_at=datetime.fromisoformat(effective.replace("Z", "+00:00")) if effective else None,
    )


async def apply(conn: Connection, principal: Principal, bundle: Resource, *, default_region: str) -> Resource:
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        raise InvalidInput("transaction_bundle_required", "POST a Bundle of type transaction", field="type")
    entries = bundle.get("entry") or []
    default_facility = min(principal.facilities_with("chw", "clinician", "facility_admin"), default=None)
    created: dict[str, uuid.UUID] = {}  # fullUrl -> new patient id
    responses: list[dict[str, Any]] = []
    # FHIR processes creates before the entries that reference them: patients first.
    order = sorted(range(len(entries)), key=lambda i: entries[i].get("resource", {}).get("resourceType") != "Patient")
    results: dict[int, dict[str, Any]] = {}
    for i in order:
        entry = entries[i]
        resource = entry.get("resource") or {}
        method = (entry.get("request") or {}).get("method")
        kind = resource.get("resourceType")
        if method != "POST" or kind not in ("Patient", "Observation"):
            raise _bad(i, "this server accepts POST of Patient and Observation in a transaction")
        try:
            if kind == "Patient":
                patient = await patients.register(
                    conn, principal, _patient_in(resource, i, default_facility), default_region=default_region
                )
                if entry.get("fullUrl"):
                    created[entry["fullUrl"]] = patient.id
                results[i] = {"status": "201 Created", "location": f"Patient/{patient.id}/_history/1"}
            else:
                subject = (resource.get("subject") or {}).get("reference", "")
                patient_id = created.get(subject) or uuid.UUID(subject.removeprefix("Patient/"))
                saved = await record.write(conn, principal, patient_id, _observation_in(resource, i))
                results[i] = {"status": "201 Created", "location": f"Observation/{saved.id}/_history/1"}
        except (ValueError, KeyError, TypeError) as exc:
            raise _bad(i, f"unreadable {kind}: {exc}") from None
    for i in range(len(entries)):
        responses.append({"response": results[i]})
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": responses}
