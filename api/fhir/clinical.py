"""Record entries as FHIR R4 resources: Encounter, Observation, Condition, MedicationRequest.

Status follows the entry: a correction (version > 1) is 'amended' where FHIR has it, an entry
marked in error is 'entered-in-error'. meta.versionId is the entry's version, so _history and
vread line up with the record's own versions."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from api.fhir import vitals
from domain.record.catalogue import ICD10, LOINC, UCUM
from domain.record.types import Entry
from infra import instants

Resource = dict[str, Any]
_V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
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
    return _base("MedicationRequest", entry) | {
        "status": "entered-in-error" if entry.status == "entered_in_error" else "active",
        "intent": "order",
        "medicationCodeableConcept": medication,
        "authoredOn": instant(entry.provenance.recorded_at),
        "dosageInstruction": [dosage],
        "dispenseRequest": {"expectedSupplyDuration": {"value": days, "unit": "days", "system": UCUM, "code": "d"}},
    }


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


# Record kinds that FHIR exposes, and how. (Notes have no resource in this interface yet.)
BY_KIND = {
    "encounter": ("Encounter", encounter),
    "observation": ("Observation", observation),
    "condition": ("Condition", condition),
    "prescription": ("MedicationRequest", medication_request),
}
KIND_OF = {resource_type: kind for kind, (resource_type, _) in BY_KIND.items()}


def to_fhir(entry: Entry) -> Resource:
    return BY_KIND[entry.kind][1](entry)
