"""FHIR transaction Bundles: create a Patient and Observations in one go, all or nothing.

The request's single database transaction makes it atomic: any entry refused rolls back every
entry before it. References between entries use the entries' `fullUrl` (urn:uuid:...), as FHIR
transactions do; an existing patient is referenced as Patient/{id}. Only POST of Patient and
Observation is accepted; the observation rules are the record's (LOINC catalogue, UCUM, ranges).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable
from datetime import date
from typing import Any, TypeVar

import asyncpg

from api.fhir.bundle import fhir_date
from api.fhir.bundle_in import Bundle, CodeableConcept, FhirObservation, FhirPatient, Quantity
from api.fhir.clinical import Resource
from domain import constraints, patients
from domain.errors import DomainError, InvalidInput
from domain.principal import Principal
from domain.record import service as record
from domain.record.types import Component, ObservationIn
from infra.db import Connection

_T = TypeVar("_T")

# The domain names the fields of its own input; a Bundle's author knows only the FHIR elements.
_PATIENT_ELEMENTS = {
    "names": "name",
    "name": "name",
    "home_facility_id": "managingOrganization",
    "birth_date": "birthDate",
    "birth_year": "birthDate",
    "sex": "gender",
    "phone": "telecom",
    "identifiers": "identifier",
    "identifier": "identifier",
}
_OBSERVATION_ELEMENTS = {
    "patient_id": "subject",
    "code": "code",
    "value": "valueQuantity.value",
    "unit": "valueQuantity.code",
    "components": "component",
    "effective_at": "effectiveDateTime",
}


def _bad(field: str, detail: str) -> InvalidInput:
    return InvalidInput("invalid_bundle_entry", detail, field=field)


def _element(field: str, at: str, elements: dict[str, str]) -> str:
    """`entry[i].resource.<element>` for a field the domain named in its own terms
    (`components[1].unit` is `component[1].valueQuantity.code`)."""
    found = re.fullmatch(r"(\w+)(?:\[(\d+)\](?:\.(\w+))?)?", field)
    if found is None:
        return at
    head, index, inner = found.groups()
    element = f"{at}.{elements.get(head, head)}"
    if index is not None:
        element += f"[{index}]"
    if inner is not None:
        element += f".{elements.get(inner, inner)}"
    return element


async def _in_entry(step: Awaitable[_T], at: str, elements: dict[str, str]) -> _T:
    """Run one entry's domain step; a refusal (by the domain or by a database constraint) names
    the entry's FHIR element, e.g. entry[1].resource.valueQuantity.value, not the domain's field."""
    try:
        return await step
    except asyncpg.IntegrityConstraintViolationError as exc:
        error = constraints.domain_error(exc)
        if error is None or error.field is None:
            raise
        error.field = _element(error.field, at, elements)
        raise error from exc
    except DomainError as exc:
        if exc.field is not None and not exc.field.startswith("entry["):
            exc.field = _element(exc.field, at, elements)
        raise


def _reference_id(reference: str, prefix: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(reference.removeprefix(prefix))
    except ValueError:
        raise _bad(field, f"the reference is {prefix}{{id}} or the fullUrl of an entry") from None


def _birth(birth: str | None, field: str) -> tuple[date | None, int | None]:
    if not fhir_date(birth, field) or birth is None:  # refuses 2026-02-30, 0000-00-00, 9999
        return None, None
    return (date.fromisoformat(birth) if len(birth) == 10 else None), int(birth[:4])


def _patient_in(resource: FhirPatient, at: str, default_facility: uuid.UUID | None) -> patients.PatientIn:
    names = [
        patients.HumanName(
            text=n.text or " ".join([*n.given, n.family or ""]).strip(),
            family=n.family,
            given=n.given,
        )
        for n in resource.name
    ]
    organization = resource.managingOrganization.reference if resource.managingOrganization else None
    facility = (
        _reference_id(organization, "Organization/", f"{at}.managingOrganization") if organization else default_facility
    )
    if facility is None:
        raise _bad(f"{at}.managingOrganization", "give managingOrganization (the patient's home facility)")
    birth_date, birth_year = _birth(resource.birthDate, f"{at}.birthDate")
    phones = [t.value for t in resource.telecom if t.system == "phone" and t.value]
    return patients.PatientIn(
        names=names,
        home_facility_id=facility,
        birth_date=birth_date,
        birth_year=birth_year,
        sex=resource.gender,
        phone=phones[0] if phones else None,
        identifiers=[patients.Identifier(i.system, i.value) for i in resource.identifier],
    )


def _quantity(q: Quantity | None, field: str) -> tuple[float, str]:
    unit = (q.code or q.unit) if q else None
    if q is None or q.value is None or not unit:
        raise _bad(field, "valueQuantity needs a value and a UCUM code")
    return q.value, unit


def _loinc(concept: CodeableConcept, field: str) -> str:
    for coding in concept.coding:
        if coding.system == "http://loinc.org" and coding.code:
            return coding.code
    raise _bad(field, "code must carry a LOINC coding")


def _observation_in(resource: FhirObservation, at: str) -> ObservationIn:
    value = unit = None
    if resource.valueQuantity is not None:
        value, unit = _quantity(resource.valueQuantity, f"{at}.valueQuantity")
    components = None
    if resource.component is not None:
        components = []
        for n, c in enumerate(resource.component):
            c_value, c_unit = _quantity(c.valueQuantity, f"{at}.component[{n}].valueQuantity")
            components.append(Component(code=_loinc(c.code, f"{at}.component[{n}].code"), value=c_value, unit=c_unit))
    return ObservationIn(
        code=_loinc(resource.code, f"{at}.code"),
        value=value,
        unit=unit,
        components=components,
        effective_at=resource.effectiveDateTime,
    )


async def apply(conn: Connection, principal: Principal, bundle: Bundle, *, default_region: str) -> Resource:
    if bundle.type != "transaction":
        raise InvalidInput("transaction_bundle_required", "POST a Bundle of type transaction", field="type")
    entries = bundle.entry
    default_facility = min(principal.facilities_with("chw", "clinician", "facility_admin"), default=None)
    created: dict[str, uuid.UUID] = {}  # fullUrl -> new patient id
    full_urls: set[str] = set()
    for i, entry in enumerate(entries):  # a reference to a fullUrl must name one entry
        if entry.fullUrl is not None and entry.fullUrl in full_urls:
            raise _bad(f"entry[{i}].fullUrl", "each entry of a Bundle has its own fullUrl")
        if entry.fullUrl is not None:
            full_urls.add(entry.fullUrl)
    # FHIR processes creates before the entries that reference them: patients first.
    order = sorted(range(len(entries)), key=lambda i: not isinstance(entries[i].resource, FhirPatient))
    results: dict[int, dict[str, Any]] = {}
    for i in order:
        entry, at = entries[i], f"entry[{i}].resource"
        if isinstance(entry.resource, FhirPatient):
            data = _patient_in(entry.resource, at, default_facility)
            patient = await _in_entry(
                patients.register(conn, principal, data, default_region=default_region), at, _PATIENT_ELEMENTS
            )
            if entry.fullUrl:
                created[entry.fullUrl] = patient.id
            results[i] = {"status": "201 Created", "location": f"Patient/{patient.id}/_history/1"}
        else:
            subject = entry.resource.subject.reference if entry.resource.subject else None
            if not subject:
                raise _bad(f"{at}.subject", "an Observation names its subject (Patient/{id} or a fullUrl)")
            if subject.startswith("urn:") and subject not in created:
                raise _bad(f"{at}.subject", "no Patient entry of this Bundle has this fullUrl")
            patient_id = created.get(subject) or _reference_id(subject, "Patient/", f"{at}.subject")
            saved = await _in_entry(
                record.write(conn, principal, patient_id, _observation_in(entry.resource, at)),
                at,
                _OBSERVATION_ELEMENTS,
            )
            results[i] = {"status": "201 Created", "location": f"Observation/{saved.id}/_history/1"}
    responses = [{"response": results[i]} for i in range(len(entries))]
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": responses}
