"""FHIR resources in, the record's own inputs out: a Patient becomes a PatientIn (create) or a
PatientPatch (update), a clinical resource an EntryIn of its kind. Nothing here decides whether
the content is acceptable (the domain does, as for the app API); this module only reads FHIR
elements and, when the domain refuses, names the FHIR element at fault instead of the domain's
field (`valueQuantity.value`, not `value`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable
from datetime import date, datetime
from typing import Any, NamedTuple, TypeVar

import asyncpg
import msgspec

from api.fhir import vitals
from api.fhir.bundle import fhir_date
from api.fhir.clinical import ALLERGY_CLINICAL, ALLERGY_VERIFICATION
from api.fhir.resources_in import (
    CodeableConcept,
    Duration,
    FhirAllergyIntolerance,
    FhirCondition,
    FhirEncounter,
    FhirImmunization,
    FhirMedicationRequest,
    FhirObservation,
    FhirPatient,
    FhirResource,
    Quantity,
)
from domain import constraints, patients
from domain.errors import DomainError, InvalidInput
from domain.record.catalogue import ICD10, LOINC, PANELS, SNOMED, VACCINE_SYSTEMS, VITALS
from domain.record.types import (
    AllergyIn,
    Component,
    ConditionIn,
    EncounterIn,
    EntryIn,
    ImmunizationIn,
    ObservationIn,
    PrescriptionIn,
)

_T = TypeVar("_T")
_S = TypeVar("_S", bound=msgspec.Struct)

# The domain names the fields of its own input; a FHIR client knows only the FHIR elements.
ELEMENTS: dict[str, dict[str, str]] = {
    "Patient": {
        "names": "name", "name": "name", "home_facility_id": "managingOrganization", "birth_date": "birthDate",
        "birth_year": "birthDate", "sex": "gender", "phone": "telecom", "identifiers": "identifier",
        "identifier": "identifier", "preferred_language": "communication", "patient_id": "id",
    },
    "Observation": {
        "patient_id": "subject", "encounter_id": "encounter", "code": "code", "value": "valueQuantity.value",
        "unit": "valueQuantity.code", "components": "component", "effective_at": "effectiveDateTime",
    },
    "Condition": {
        "patient_id": "subject", "encounter_id": "encounter", "code": "code", "display": "code",
        "clinical_status": "clinicalStatus", "verification_status": "verificationStatus", "onset": "onsetDateTime",
        "note": "note[0].text",
    },
    "MedicationRequest": {
        "patient_id": "subject", "encounter_id": "encounter", "drug": "medicationCodeableConcept",
        "drug_code": "medicationCodeableConcept.coding", "dose": "dosageInstruction[0].doseAndRate[0].doseQuantity",
        "route": "dosageInstruction[0].route", "frequency": "dosageInstruction[0].timing.code",
        "duration_days": "dosageInstruction[0].timing.repeat.boundsDuration",
        "instructions": "dosageInstruction[0].patientInstruction",
    },
    "AllergyIntolerance": {
        "patient_id": "patient", "encounter_id": "encounter", "substance": "code", "snomed_code": "code.coding",
        "category": "category", "criticality": "criticality", "clinical_status": "clinicalStatus",
        "verification_status": "verificationStatus", "reaction": "reaction[0].manifestation",
        "severity": "reaction[0].severity", "onset": "onsetDateTime", "note": "note[0].text",
    },
    "Immunization": {
        "patient_id": "patient", "encounter_id": "encounter", "vaccine": "vaccineCode",
        "vaccine_code": "vaccineCode.coding", "code_system": "vaccineCode.coding", "status": "status",
        "occurred_at": "occurrenceDateTime", "dose_number": "protocolApplied[0].doseNumberPositiveInt",
        "lot_number": "lotNumber", "not_done_reason": "statusReason", "note": "note[0].text",
    },
    "Encounter": {
        "patient_id": "subject", "mode": "class", "reason": "reasonCode[0].text", "started_at": "period.start",
        "ended_at": "period.end",
    },
}  # fmt: skip
_ROUTES = ("oral", "intravenous", "intramuscular", "subcutaneous", "topical", "inhaled", "rectal", "sublingual")
_CLINICAL_STATUS = ("active", "recurrence", "relapse", "inactive", "remission", "resolved")
_VERIFICATION_STATUS = ("unconfirmed", "provisional", "differential", "confirmed", "refuted")
_LANGUAGES = ("km", "vi", "fr", "en")
_ALLERGY_CLINICAL = ("active", "inactive", "resolved")
_ALLERGY_VERIFICATION = ("unconfirmed", "confirmed", "refuted", "entered-in-error")
_CODE_SYSTEM_OF_VACCINES = {system: name for name, system in VACCINE_SYSTEMS.items()}
_MODE_OF_CLASS = {"AMB": "in_person", "VR": "video"}
# The class this server writes for each mode (api/fhir/clinical.py): an update keeps the mode
# when the class is unchanged, so audio or asynchronous consultations stay what they were.
CLASS_OF_MODE = {"in_person": "AMB", "video": "VR", "audio": "VR", "async": "VR"}


def bad(field: str, detail: str, code: str = "invalid_resource") -> InvalidInput:
    return InvalidInput(code, detail, field=field)


def element(field: str, at: str, elements: dict[str, str]) -> str:
    """`{at}.<element>` for a field the domain named in its own terms
    (`components[1].unit` is `component[1].valueQuantity.code`)."""
    found = re.fullmatch(r"(\w+)(?:\[(\d+)\](?:\.(\w+))?)?", field)
    if found is None:
        return at
    head, index, inner = found.groups()
    named = f"{at}.{elements.get(head, head)}"
    if index is not None:
        named += f"[{index}]"
    if inner is not None:
        named += f".{elements.get(inner, inner)}"
    return named


async def in_resource(step: Awaitable[_T], at: str, resource_type: str) -> _T:
    """Run one resource's domain step; a refusal (by the domain or by a database constraint)
    names the FHIR element, e.g. entry[1].resource.valueQuantity.value, not the domain's field."""
    elements = ELEMENTS.get(resource_type, {})
    try:
        return await step
    except asyncpg.IntegrityConstraintViolationError as exc:
        error = constraints.domain_error(exc)
        if error is None or error.field is None:
            raise
        error.field = element(error.field, at, elements)
        raise error from exc
    except DomainError as exc:
        if exc.field is not None and not exc.field.startswith(at):
            exc.field = element(exc.field, at, elements)
        raise


class Refs:
    """References a client may write: `Type/{id}` (optionally absolute or versioned), or within
    a transaction the `fullUrl` of another entry, resolved to the id that entry created."""

    def __init__(self) -> None:
        self.created: dict[str, tuple[str, uuid.UUID]] = {}

    def resolve(self, reference: str | None, resource_type: str, field: str) -> uuid.UUID:
        if not reference:
            raise bad(field, f"give the {resource_type} reference ({resource_type}/{{id}})")
        if reference in self.created:
            kind, ident = self.created[reference]
            if kind != resource_type:
                raise bad(field, f"that entry is a {kind}, not a {resource_type}", "invalid_reference")
            return ident
        if reference.startswith("urn:"):
            raise bad(field, f"no {resource_type} entry of this Bundle has this fullUrl", "invalid_reference")
        found = re.fullmatch(rf"(?:.*/)?{resource_type}/([^/]+)(?:/_history/[^/]+)?", reference)
        try:
            return uuid.UUID(found[1] if found else "")
        except ValueError:
            raise bad(field, f"the reference is {resource_type}/{{id}} or the fullUrl of an entry",
                      "invalid_reference") from None  # fmt: skip


def _birth(birth: str | None, field: str) -> tuple[date | None, int | None]:
    if not fhir_date(birth, field) or birth is None:  # refuses 2026-02-30, 0000-00-00, 9999
        return None, None
    return (date.fromisoformat(birth) if len(birth) == 10 else None), int(birth[:4])


def _names(resource: FhirPatient) -> list[patients.HumanName]:
    names = []
    for n in resource.name:
        use = n.use if n.use in ("official", "usual", "nickname", "maiden") else "official"
        text = n.text or " ".join([*n.given, n.family or ""]).strip()
        names.append(patients.HumanName(text=text, family=n.family, given=n.given, use=use))
    return names


def _language(resource: FhirPatient, at: str) -> str | None:
    chosen = next((c for c in resource.communication if c.preferred), None) or next(iter(resource.communication), None)
    if chosen is None:
        return None
    codes = [c.code for c in chosen.language.coding if c.code]
    for code in codes:
        if code.split("-")[0].lower() in _LANGUAGES:
            return code.split("-")[0].lower()
    index = resource.communication.index(chosen)
    raise bad(f"{at}.communication[{index}].language", f"the languages spoken here are {', '.join(_LANGUAGES)}",
              "unsupported_language")  # fmt: skip


def _phone(resource: FhirPatient) -> str | None:
    phones = [t.value for t in resource.telecom if t.system in ("phone", "sms") and t.value]
    return phones[0] if phones else None


def patient_in(resource: FhirPatient, at: str, default_facility: uuid.UUID | None, refs: Refs) -> patients.PatientIn:
    organization = resource.managingOrganization.reference if resource.managingOrganization else None
    facility = refs.resolve(organization, "Organization", f"{at}.managingOrganization") if organization else None
    facility = facility or default_facility
    if facility is None:
        raise bad(f"{at}.managingOrganization", "give managingOrganization (the patient's home facility)")
    birth_date, birth_year = _birth(resource.birthDate, f"{at}.birthDate")
    language = _language(resource, at)
    patient = patients.PatientIn(
        names=_names(resource),
        home_facility_id=facility,
        birth_date=birth_date,
        birth_year=birth_year,
        sex=resource.gender,
        phone=_phone(resource),
        identifiers=[patients.Identifier(i.system, i.value) for i in resource.identifier],
        **({"preferred_language": language} if language else {}),  # type: ignore[arg-type]
    )
    return _valid(patient, at, "Patient")


def patient_patch(resource: FhirPatient, at: str, current: patients.Patient, refs: Refs) -> patients.PatientPatch:
    """An update replaces the patient's demographics with the resource's. What the record cannot
    take away once given (a phone, a birth date) or move (the home facility) is refused, not
    silently kept."""
    organization = resource.managingOrganization.reference if resource.managingOrganization else None
    if organization and refs.resolve(organization, "Organization", f"{at}.managingOrganization") != (
        current.home_facility_id
    ):
        raise bad(f"{at}.managingOrganization", "a patient's home facility is not changed by an update",
                  "home_facility_change_unsupported")  # fmt: skip
    birth_date, birth_year = _birth(resource.birthDate, f"{at}.birthDate")
    phone = _phone(resource)
    if current.phone and phone is None:
        raise bad(f"{at}.telecom", "a patient's phone can be changed but not removed", "element_removal_unsupported")
    if (current.birth_date or current.birth_year) and birth_year is None:
        raise bad(f"{at}.birthDate", "a birth date can be changed but not removed", "element_removal_unsupported")
    language = _language(resource, at)
    patch = patients.PatientPatch(
        names=_names(resource),
        birth_date=birth_date,
        birth_year=birth_year,
        sex=resource.gender,
        phone=phone,
        preferred_language=language,  # type: ignore[arg-type]
        identifiers=[patients.Identifier(i.system, i.value) for i in resource.identifier],
    )
    return _valid(patch, at, "Patient")


class Inbound(NamedTuple):
    """A clinical resource read: whose record, the entry, and whether it says entered-in-error."""

    patient_id: uuid.UUID
    entry: EntryIn
    entered_in_error: bool


def _loinc(concept: CodeableConcept, field: str) -> str:
    """The LOINC code the catalogue knows (a resource may carry several LOINC codings, e.g. SpO2
    as 59408-5 and 2708-6), else the first LOINC code."""
    codes = [c.code for c in concept.coding if c.system == LOINC and c.code]
    for code in codes:
        if code in VITALS or code in PANELS:
            return code
    # A vital sign coded only with its R4 profile's code (SpO2 as 2708-6) is the catalogue's.
    for code in codes:
        if code in vitals.INBOUND_ALIASES:
            return vitals.INBOUND_ALIASES[code]
    if codes:
        return codes[0]
    raise bad(field, "code must carry a LOINC coding")


def _quantity(q: Quantity | None, field: str) -> tuple[float, str]:
    unit = (q.code or q.unit) if q else None
    if q is None or q.value is None or not unit:
        raise bad(field, "valueQuantity needs a value and a UCUM code")
    return q.value, unit


def _days(duration: Duration | None) -> int | None:
    if duration is None or duration.value is None:
        return None
    unit = duration.code or duration.unit
    if unit not in ("d", "day", "days") or duration.value != int(duration.value):
        return None
    return int(duration.value)


def _effective(r: FhirObservation, at: str) -> datetime | None:
    """effectiveDateTime, or the start of effectivePeriod (the vital-signs profiles allow either;
    the record keeps the instant a measurement was taken)."""
    if r.effectivePeriod is None:
        return r.effectiveDateTime
    if r.effectiveDateTime is not None:
        raise bad(f"{at}.effectivePeriod", "effective[x] is one of effectiveDateTime or effectivePeriod")
    if r.effectivePeriod.start is None:
        raise bad(f"{at}.effectivePeriod.start", "effectivePeriod needs a start")
    return r.effectivePeriod.start


def _observation(r: FhirObservation, at: str, encounter_id: uuid.UUID | None) -> ObservationIn:
    value = unit = None
    code = _loinc(r.code, f"{at}.code")
    if r.valueQuantity is not None:
        value, unit = vitals.in_catalogue_unit(code, *_quantity(r.valueQuantity, f"{at}.valueQuantity"))
    components = None
    if r.component is not None:
        components = []
        for n, c in enumerate(r.component):
            c_value, c_unit = _quantity(c.valueQuantity, f"{at}.component[{n}].valueQuantity")
            components.append(Component(code=_loinc(c.code, f"{at}.component[{n}].code"), value=c_value, unit=c_unit))
    return ObservationIn(
        code=code, value=value, unit=unit, components=components,
        effective_at=_effective(r, at), encounter_id=encounter_id,
    )  # fmt: skip


def _status_code(concept: CodeableConcept | None) -> str | None:
    return next((c.code for c in concept.coding if c.code), None) if concept else None


def _condition(r: FhirCondition, at: str, encounter_id: uuid.UUID | None) -> ConditionIn:
    coding = next((c for c in r.code.coding if (c.system or "").startswith(ICD10) and c.code), None)
    if coding is None or coding.code is None:
        raise bad(f"{at}.code", f"code must carry an ICD-10 coding ({ICD10})")
    values: dict[str, Any] = {"code": coding.code, "encounter_id": encounter_id}
    if coding.display:
        values["display"] = coding.display
    clinical = _status_code(r.clinicalStatus)
    if clinical is not None:
        if clinical not in _CLINICAL_STATUS:
            raise bad(f"{at}.clinicalStatus", f"clinicalStatus is one of {', '.join(_CLINICAL_STATUS)}")
        values["clinical_status"] = clinical
    verification = _status_code(r.verificationStatus)
    if verification is not None and verification != "entered-in-error":
        if verification not in _VERIFICATION_STATUS:
            raise bad(f"{at}.verificationStatus", f"verificationStatus is one of {', '.join(_VERIFICATION_STATUS)}")
        values["verification_status"] = verification
    if r.onsetDateTime is not None:
        values["onset"] = r.onsetDateTime
    if r.note:
        values["note"] = r.note[0].text
    return ConditionIn(**values)


def _prescription(r: FhirMedicationRequest, at: str, encounter_id: uuid.UUID | None) -> PrescriptionIn:
    medication = r.medicationCodeableConcept
    coding = next((c for c in medication.coding if c.code), None)
    drug = medication.text or (coding.display if coding else None)
    if not drug:
        raise bad(f"{at}.medicationCodeableConcept", "name the medication (medicationCodeableConcept.text)")
    if not r.dosageInstruction:
        raise bad(f"{at}.dosageInstruction", "give one dosageInstruction (dose, route, timing)")
    dosage, where = r.dosageInstruction[0], f"{at}.dosageInstruction[0]"
    dose = dosage.doseAndRate[0].doseQuantity if dosage.doseAndRate else None
    if dose is None or dose.value is None or not (dose.unit or dose.code):
        raise bad(f"{where}.doseAndRate[0].doseQuantity", "give the dose as a quantity (value and unit)")
    route = (dosage.route.text or _status_code(dosage.route) or "").lower() if dosage.route else ""
    if route not in _ROUTES:
        raise bad(f"{where}.route", f"route (text) is one of {', '.join(_ROUTES)}")
    frequency = dosage.timing.code.text if dosage.timing and dosage.timing.code else None
    if not frequency:
        raise bad(f"{where}.timing.code", "give the frequency as timing.code.text, e.g. 3 times a day")
    bounds = dosage.timing.repeat.boundsDuration if dosage.timing and dosage.timing.repeat else None
    supply = r.dispenseRequest.expectedSupplyDuration if r.dispenseRequest else None
    days = _days(bounds) or _days(supply)
    if days is None:
        raise bad(f"{where}.timing.repeat.boundsDuration", "give the duration in whole days (unit d)")
    values: dict[str, Any] = {
        "drug": drug, "dose": f"{dose.value:g} {dose.unit or dose.code}", "route": route, "frequency": frequency,
        "duration_days": days, "encounter_id": encounter_id,
    }  # fmt: skip
    if coding is not None:
        values["drug_code"] = coding.code
    if dosage.patientInstruction:
        values["instructions"] = dosage.patientInstruction
    return PrescriptionIn(**values)


def _encounter(r: FhirEncounter, at: str, current_mode: str | None) -> EncounterIn:
    code = r.class_.code or ""
    if current_mode is not None and CLASS_OF_MODE.get(current_mode) == code:
        mode = current_mode
    elif code in _MODE_OF_CLASS:
        mode = _MODE_OF_CLASS[code]
    else:
        raise bad(f"{at}.class", "class is AMB (in person) or VR (remote) of v3-ActCode")
    return EncounterIn(
        mode=mode,  # type: ignore[arg-type]
        reason=r.reasonCode[0].text if r.reasonCode else None,
        started_at=r.period.start if r.period else None,
        ended_at=r.period.end if r.period else None,
    )


def _coded_status(concept: CodeableConcept | None, system: str, allowed: tuple[str, ...], field: str) -> str | None:
    """The code of an R4 status concept: its coding in `system` (or one naming no system, as a
    Condition's may); a code outside `allowed` is refused."""
    if concept is None:
        return None
    coding = next((c for c in concept.coding if c.system == system and c.code), None) or next(
        (c for c in concept.coding if c.system is None and c.code), None
    )
    if coding is None or coding.code is None:
        raise bad(field, f"give a coding of {system}")
    if coding.code not in allowed:
        raise bad(field, f"the code is one of {', '.join(allowed)} ({system})")
    return coding.code


def _words(concept: CodeableConcept | None, field: str, what: str) -> str:
    """What a reader sees: the concept's text, else its first coding's display."""
    found = None
    if concept is not None:
        found = concept.text or next((c.display for c in concept.coding if c.display), None)
    if not found:
        raise bad(field, f"name the {what} in words (its text, or a coding's display)")
    return found


def _allergy(r: FhirAllergyIntolerance, at: str, encounter_id: uuid.UUID | None) -> AllergyIn:
    """The substance in words, coded in SNOMED CT when the resource carries such a coding; a
    concept coded only in another system is refused rather than kept without its code."""
    substance = _words(r.code, f"{at}.code", "substance")
    values: dict[str, Any] = {"substance": substance, "encounter_id": encounter_id}
    if r.code is not None and r.code.coding:
        snomed = next((c for c in r.code.coding if c.system == SNOMED and c.code), None)
        if snomed is None:
            raise bad(f"{at}.code.coding", f"code a substance in SNOMED CT ({SNOMED}), or give code.text alone")
        values["snomed_code"] = snomed.code
    clinical = _coded_status(r.clinicalStatus, ALLERGY_CLINICAL, _ALLERGY_CLINICAL, f"{at}.clinicalStatus")
    if clinical is not None:
        values["clinical_status"] = clinical
    verification = _coded_status(
        r.verificationStatus, ALLERGY_VERIFICATION, _ALLERGY_VERIFICATION, f"{at}.verificationStatus"
    )
    if verification is not None and verification != "entered-in-error":
        values["verification_status"] = verification
    if r.category:
        values["category"] = r.category[0]
    if r.criticality is not None:
        values["criticality"] = r.criticality
    if r.reaction:
        reaction, where = r.reaction[0], f"{at}.reaction[0]"
        if not reaction.manifestation:
            raise bad(f"{where}.manifestation", "a reaction names its manifestation")
        values["reaction"] = _words(reaction.manifestation[0], f"{where}.manifestation[0]", "manifestation")
        if reaction.severity is not None:
            values["severity"] = reaction.severity
    if r.onsetDateTime is not None:
        values["onset"] = r.onsetDateTime
    if r.note:
        values["note"] = r.note[0].text
    return AllergyIn(**values)


def _immunization(r: FhirImmunization, at: str, encounter_id: uuid.UUID | None) -> ImmunizationIn:
    """The vaccine in words, coded in CVX or the country's own list (VACCINE_SYSTEMS)."""
    vaccine = _words(r.vaccineCode, f"{at}.vaccineCode", "vaccine")
    values: dict[str, Any] = {"vaccine": vaccine, "encounter_id": encounter_id}
    if r.vaccineCode.coding:
        coding = next((c for c in r.vaccineCode.coding if c.system in _CODE_SYSTEM_OF_VACCINES and c.code), None)
        if coding is None or coding.system is None:
            systems = " or ".join(VACCINE_SYSTEMS.values())
            raise bad(f"{at}.vaccineCode.coding", f"code a vaccine in {systems}, or give vaccineCode.text alone")
        values["vaccine_code"], values["code_system"] = coding.code, _CODE_SYSTEM_OF_VACCINES[coding.system]
    if r.status != "entered-in-error":
        values["status"] = r.status
    if r.statusReason is not None:
        values["not_done_reason"] = _words(r.statusReason, f"{at}.statusReason", "reason")
    if r.occurrenceDateTime is None:
        raise bad(f"{at}.occurrenceDateTime", "give occurrenceDateTime: when the vaccine was given (or not)")
    values["occurred_at"] = r.occurrenceDateTime
    if r.protocolApplied and r.protocolApplied[0].doseNumberPositiveInt is not None:
        values["dose_number"] = r.protocolApplied[0].doseNumberPositiveInt
    if r.lotNumber is not None:
        values["lot_number"] = r.lotNumber
    if r.note:
        values["note"] = r.note[0].text
    return ImmunizationIn(**values)


def _entered_in_error(r: FhirResource) -> bool:
    if isinstance(r, FhirCondition | FhirAllergyIntolerance):
        return _status_code(r.verificationStatus) == "entered-in-error"
    return getattr(r, "status", None) == "entered-in-error"


def _valid(value: _S, at: str, resource_type: str) -> _S:
    """The domain's input checked against its declared bounds (lengths, counts, ranges), as a
    decoded body is: built here from FHIR elements, it did not pass through the decoder."""
    try:
        builtins = msgspec.to_builtins(value, builtin_types=(datetime, date, uuid.UUID))
        checked = msgspec.convert(builtins, type=type(value))
    except msgspec.ValidationError as exc:
        found = re.search(r"at `\$\.?([^`]*)`", str(exc))
        field = element(found[1], at, ELEMENTS[resource_type]) if found else at
        raise InvalidInput("invalid_input", str(exc).split(" - at ")[0], field=field) from None
    return checked


def entry_in(r: FhirResource, at: str, refs: Refs, *, current_mode: str | None = None) -> Inbound:
    """A clinical resource as the record's input; the subject and encounter are resolved."""
    assert not isinstance(r, FhirPatient)
    if isinstance(r, FhirAllergyIntolerance | FhirImmunization):  # R4 names their patient `patient`
        patient_id = refs.resolve(r.patient.reference if r.patient else None, "Patient", f"{at}.patient")
    else:
        patient_id = refs.resolve(r.subject.reference if r.subject else None, "Patient", f"{at}.subject")
    if isinstance(r, FhirEncounter):
        entry: EntryIn = _encounter(r, at, current_mode)
    else:
        encounter = r.encounter.reference if r.encounter else None
        encounter_id = refs.resolve(encounter, "Encounter", f"{at}.encounter") if encounter else None
        if isinstance(r, FhirObservation):
            entry = _observation(r, at, encounter_id)
        elif isinstance(r, FhirCondition):
            entry = _condition(r, at, encounter_id)
        elif isinstance(r, FhirAllergyIntolerance):
            entry = _allergy(r, at, encounter_id)
        elif isinstance(r, FhirImmunization):
            entry = _immunization(r, at, encounter_id)
        else:
            entry = _prescription(r, at, encounter_id)
    resource_type: str = type(r).__struct_config__.tag  # type: ignore[assignment]
    return Inbound(patient_id, _valid(entry, at, resource_type), _entered_in_error(r))
