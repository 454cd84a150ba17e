"""Record entries as FHIR R4 resources: Encounter, Observation, Condition, MedicationRequest,
AllergyIntolerance, Immunization.

Status follows the entry: a correction (version > 1) is 'amended' where FHIR has it, an entry
marked in error is 'entered-in-error'. meta.versionId is the entry's version, so _history and
vread line up with the record's own versions."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from api.fhir import vitals
from domain.record.catalogue import ICD10, LOINC, SNOMED, UCUM, VACCINE_SYSTEMS
from domain.record.types import Entry
from infra import instants

Resource = dict[str, Any]
_V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
_DOSE = re.compile(r"\s*([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*(\S.{0,99})")


def instant(value: datetime) -> datetime:
    """The instant in UTC, left a datetime: msgspec writes a UTC datetime as RFC 3339 with `Z`,
    the form infra.instants.text gives, without building a string per field in Python (a third of
    the per-entry work of $everything). Values from PostgreSQL are UTC already."""
    return value if value.tzinfo is UTC else instants.utc(value)


def ref(kind: str, value: object) -> dict[str, str]:
    return {"reference": f"{kind}/{value}"}


def _base(resource_type: str, entry: Entry) -> Resource:
    resource: Resource = {
        "resourceType": resource_type,
        "id": str(entry.id),
        "meta": {"versionId": str(entry.version), "lastUpdated": instant(entry.provenance.recorded_at)},
        "subject": ref("Patient", entry.patient_id),
    }
    if entry.encounter_id is not None:
        resource["encounter"] = ref("Encounter", entry.encounter_id)
    return resource


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _loinc_codings(code: str, display: str | None) -> list[dict[str, Any]]:
    """The catalogue's coding, and the vital-sign profile's own code where it differs (SpO2)."""
    codings: list[dict[str, Any]] = [{"system": LOINC, "code": code, **({"display": display} if display else {})}]
    if extra := vitals.EXTRA_CODINGS.get(code):
        codings.append({"system": LOINC, "code": extra[0], "display": extra[1]})
    return codings


def observation(entry: Entry) -> Resource:
    """An Observation; a vital sign conforms to its R4 vital-signs profile (api/fhir/vitals.py)."""
    body = entry.body
    status = "entered-in-error" if entry.status == "entered_in_error" else "amended" if entry.version > 1 else "final"
    resource = _base("Observation", entry)
    if profile := vitals.PROFILES.get(body["code"]):
        resource["meta"]["profile"] = [profile]
    resource["status"] = status
    resource["category"] = vitals.category_concepts(body["code"])
    resource["code"] = {"coding": _loinc_codings(body["code"], body.get("display"))}
    resource["effectiveDateTime"] = instant(entry.effective_at)
    resource["issued"] = instant(entry.provenance.recorded_at)
    if entry.provenance.facility_id is not None:
        resource["performer"] = [ref("Organization", entry.provenance.facility_id)]
    if "value" in body:
        resource["valueQuantity"] = _quantity(body["value"], body["unit"])
    if body.get("components"):
        resource["component"] = [
            {
                "code": {"coding": _loinc_codings(c["code"], c.get("display"))},
                "valueQuantity": _quantity(c["value"], c["unit"]),
            }
            for c in body["components"]
        ]
    return resource


def condition(entry: Entry) -> Resource:
    body = entry.body
    resource = _base("Condition", entry) | {
        "code": {
            "coding": [
                {"system": ICD10, "code": body["code"], **({"display": body["display"]} if "display" in body else {})}
            ]
        },
        "recordedDate": instant(entry.provenance.recorded_at),
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "entered-in-error" if entry.status == "entered_in_error" else body["verification_status"],
                }
            ]
        },
    }
    # con-5: an entered-in-error condition carries no clinical status.
    if entry.status != "entered_in_error":
        resource["clinicalStatus"] = {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": body["clinical_status"]}
            ]
        }
    if "onset" in body:
        resource["onsetDateTime"] = instant(datetime.fromisoformat(body["onset"]))
    if "note" in body:
        resource["note"] = [{"text": body["note"]}]
    return resource


def medication_request(entry: Entry) -> Resource:
    body = entry.body
    days = body["duration_days"]
    medication: dict[str, Any] = {"text": body["drug"]}
    if "drug_code" in body:
        medication["coding"] = [{"code": body["drug_code"], "display": body["drug"]}]
    dosage: dict[str, Any] = {
        "text": f"{body['dose']} {body['route']}, {body['frequency']}, for {days} day(s)",
        "route": {"text": body["route"]},
        "timing": {
            "code": {"text": body["frequency"]},
            "repeat": {"boundsDuration": {"value": days, "unit": "d", "system": UCUM, "code": "d"}},
        },
    }
    if dose := _DOSE.fullmatch(body["dose"]):  # "500 mg", "2 puffs": also as a quantity (what updates read)
        value = float(dose[1])
        dosage["doseAndRate"] = [{"doseQuantity": {"value": int(value) if value.is_integer() else value,
                                                    "unit": dose[2]}}]  # fmt: skip
    if "instructions" in body:
        dosage["patientInstruction"] = body["instructions"]
    return (
        _base("MedicationRequest", entry)
        | _prescribing(body)
        | {
            "status": "entered-in-error" if entry.status == "entered_in_error" else "active",
            "intent": "order",
            "medicationCodeableConcept": medication,
            "authoredOn": instant(entry.provenance.recorded_at),
            "dosageInstruction": [dosage],
            "dispenseRequest": {"expectedSupplyDuration": {"value": days, "unit": "days", "system": UCUM, "code": "d"}},
        }
    )


# --- electronic prescriptions (domain.prescriptions) ---
PRESCRIPTION_CODE_SYSTEM = "https://spean.dev/fhir/sid/prescription-code"
PRESCRIBING_FACILITY = "https://spean.dev/fhir/StructureDefinition/prescribing-facility"


def _prescribing(body: dict[str, Any]) -> dict[str, Any]:
    """The prescription's code, the prescriber by licence and the facility by national code, as
    stamped when it was written (absent from prescriptions written before codes existed)."""
    added: dict[str, Any] = {}
    if "prescription_code" in body:
        added["identifier"] = [{"use": "official", "system": PRESCRIPTION_CODE_SYSTEM,
                                "value": body["prescription_code"]}]  # fmt: skip
    if "prescriber_licence" in body:
        added["requester"] = {"type": "Practitioner", "identifier": dict(body["prescriber_licence"])}
    if "facility_code" in body:
        facility = {"type": "Organization", "identifier": dict(body["facility_code"])}
        added["extension"] = [{"url": PRESCRIBING_FACILITY, "valueReference": facility}]
    return added


def encounter(entry: Entry) -> Resource:
    body = entry.body
    resource = _base("Encounter", entry)
    resource.pop("encounter", None)
    subject = resource.pop("subject")
    resource |= {
        "status": "entered-in-error" if entry.status == "entered_in_error" else "finished",
        "class": {"system": _V3_ACT, "code": "AMB" if body.get("mode") == "in_person" else "VR"},
        "subject": subject,
        "period": {"start": instant(entry.effective_at)},
    }
    if "ended_at" in body:
        resource["period"]["end"] = instant(datetime.fromisoformat(body["ended_at"]))
    if "reason" in body:
        resource["reasonCode"] = [{"text": body["reason"]}]
    if entry.appointment_id is not None:
        resource["appointment"] = [ref("Appointment", entry.appointment_id)]
    if "referral_id" in body:  # an asynchronous consultation answering a referral
        resource["basedOn"] = [ref("ServiceRequest", body["referral_id"])]
    if entry.provenance.facility_id is not None:
        resource["serviceProvider"] = ref("Organization", entry.provenance.facility_id)
    return resource


# --- allergies and immunizations (their patient is `patient`, not `subject`) ----------------------


def _with_patient(resource_type: str, entry: Entry) -> Resource:
    resource = _base(resource_type, entry)
    resource["patient"] = resource.pop("subject")
    return resource


def _coded(system: str, code: str | None, text: str) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": text}
    if code is not None:
        concept["coding"] = [{"system": system, "code": code, "display": text}]
    return concept


def allergy_intolerance(entry: Entry) -> Resource:
    body = entry.body
    in_error = entry.status == "entered_in_error"
    resource = _with_patient("AllergyIntolerance", entry)
    # ait-1/ait-2: a clinical status unless the entry was entered in error.
    if not in_error:
        resource["clinicalStatus"] = {"coding": [{"system": ALLERGY_CLINICAL, "code": body["clinical_status"]}]}
    resource["verificationStatus"] = {
        "coding": [{"system": ALLERGY_VERIFICATION,
                    "code": "entered-in-error" if in_error else body["verification_status"]}]
    }  # fmt: skip
    if "category" in body:
        resource["category"] = [body["category"]]
    if "criticality" in body:
        resource["criticality"] = body["criticality"]
    resource["code"] = _coded(SNOMED, body.get("snomed_code"), body["substance"])
    if "onset" in body:
        resource["onsetDateTime"] = instant(datetime.fromisoformat(body["onset"]))
    resource["recordedDate"] = instant(entry.provenance.recorded_at)
    if "reaction" in body:
        reaction: dict[str, Any] = {"manifestation": [{"text": body["reaction"]}]}
        if "severity" in body:
            reaction["severity"] = body["severity"]
        resource["reaction"] = [reaction]
    if "note" in body:
        resource["note"] = [{"text": body["note"]}]
    return resource


def immunization(entry: Entry) -> Resource:
    body = entry.body
    resource = _with_patient("Immunization", entry)
    resource["status"] = "entered-in-error" if entry.status == "entered_in_error" else body["status"]
    if "not_done_reason" in body:
        resource["statusReason"] = {"text": body["not_done_reason"]}
    system = VACCINE_SYSTEMS[body.get("code_system", "cvx")]
    resource["vaccineCode"] = _coded(system, body.get("vaccine_code"), body["vaccine"])
    resource["occurrenceDateTime"] = instant(entry.effective_at)
    resource["recorded"] = instant(entry.provenance.recorded_at)
    if "lot_number" in body:
        resource["lotNumber"] = body["lot_number"]
    if entry.provenance.facility_id is not None:
        resource["performer"] = [{"actor": ref("Organization", entry.provenance.facility_id)}]
    if "note" in body:
        resource["note"] = [{"text": body["note"]}]
    if "dose_number" in body:
        resource["protocolApplied"] = [{"doseNumberPositiveInt": body["dose_number"]}]
    return resource


# Record kinds that FHIR exposes, and how. (Notes have no resource in this interface yet.)
BY_KIND = {
    "encounter": ("Encounter", encounter),
    "observation": ("Observation", observation),
    "condition": ("Condition", condition),
    "prescription": ("MedicationRequest", medication_request),
    "allergy": ("AllergyIntolerance", allergy_intolerance),
    "immunization": ("Immunization", immunization),
}
KIND_OF = {resource_type: kind for kind, (resource_type, _) in BY_KIND.items()}
# The types FHIR also creates and updates (api/fhir/writes.py): every one of these.
WRITTEN = ("Encounter", "Observation", "Condition", "MedicationRequest", "AllergyIntolerance", "Immunization")


def to_fhir(entry: Entry) -> Resource:
    return BY_KIND[entry.kind][1](entry)
