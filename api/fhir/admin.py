"""Patients, people, places and workflow as FHIR R4 resources: Patient, Practitioner,
Organization, Appointment, ServiceRequest (referral), Consent."""

from __future__ import annotations

from typing import Any

from api.fhir.clinical import Resource, instant, ref
from domain.booking.appointments import Appointment
from domain.consent.service import Consent
from domain.facilities import Facility
from domain.patients import Patient
from domain.practitioners import Practitioner
from domain.referral.service import Referral

_BCP47 = "urn:ietf:bcp:47"
FACILITY_KIND = "https://spean.dev/fhir/CodeSystem/facility-kind"
APPOINTMENT_STATUS = {
    "booked": "booked",
    "checked_in": "checked-in",
    "in_progress": "arrived",
    "completed": "fulfilled",
    "cancelled": "cancelled",
    "no_show": "noshow",
}
REFERRAL_STATUS = {
    "requested": "active",
    "accepted": "active",
    "answered": "completed",
    "declined": "revoked",
    "cancelled": "revoked",
}
PRIORITY = {"routine": "routine", "urgent": "urgent", "emergency": "stat"}


def _meta(version: int | str, updated: Any) -> dict[str, Any]:
    return {"versionId": str(version), "lastUpdated": instant(updated)}


def patient(p: Patient) -> Resource:
    names = []
    for n in p.names:
        name: dict[str, Any] = {"use": n.use, "text": n.text}
        if n.family:
            name["family"] = n.family
        if n.given:
            name["given"] = n.given
        names.append(name)
    resource: Resource = {
        "resourceType": "Patient",
        "id": str(p.id),
        "meta": _meta(p.version, p.updated_at),
        "name": names,
        "gender": p.sex or "unknown",
        "communication": [
            {"language": {"coding": [{"system": _BCP47, "code": p.preferred_language}]}, "preferred": True}
        ],
        "managingOrganization": ref("Organization", p.home_facility_id),
    }
    if p.identifiers:
        resource["identifier"] = [{"system": i.system, "value": i.value} for i in p.identifiers]
    if p.phone:
        resource["telecom"] = [{"system": "phone", "value": p.phone}]
    if p.birth_date:
        resource["birthDate"] = p.birth_date.isoformat()
    elif p.birth_year:
        resource["birthDate"] = f"{p.birth_year:04d}"  # FHIR date allows a year alone
    return resource


def practitioner(p: Practitioner) -> Resource:
    resource: Resource = {
        "resourceType": "Practitioner",
        "id": str(p.id),
        "meta": _meta(1, p.created_at),
        "name": [{"text": p.name}],
    }
    if p.qualification:
        resource["qualification"] = [{"code": {"text": p.qualification}}]
    if p.languages:
        resource["communication"] = [{"coding": [{"system": _BCP47, "code": lang}]} for lang in p.languages]
    return resource


def organization(f: Facility) -> Resource:
    resource: Resource = {
        "resourceType": "Organization",
        "id": str(f.id),
        "meta": _meta(1, f.updated_at),
        "active": True,
        "type": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"},
                    {"system": FACILITY_KIND, "code": f.kind},  # what Organization?type=health_post finds
                ],
                "text": f.kind.replace("_", " "),
            }
        ],
        "name": f.name,
        "address": [{"country": f.country, **({"state": f.province} if f.province else {})}],
    }
    if f.phone:
        resource["telecom"] = [{"system": "phone", "value": f.phone}]
    return resource


def appointment(a: Appointment) -> Resource:
    resource: Resource = {
        "resourceType": "Appointment",
        "id": str(a.id),
        "meta": _meta(a.version, a.updated_at),
        "status": APPOINTMENT_STATUS[a.status],
        "start": instant(a.start),
        "end": instant(a.end),
        "created": instant(a.created_at),
        "participant": [
            {"actor": ref("Patient", a.patient_id), "status": "accepted"},
            {"actor": ref("Practitioner", a.practitioner_id), "status": "accepted"},
        ],
        "appointmentType": {"text": a.mode},
    }
    if a.cancel_reason:
        resource["cancelationReason"] = {"text": a.cancel_reason}
    return resource


def service_request(r: Referral) -> Resource:
    resource: Resource = {
        "resourceType": "ServiceRequest",
        "id": str(r.id),
        "meta": _meta(r.version, r.updated_at),
        "status": REFERRAL_STATUS[r.status],
        "intent": "order",
        "priority": PRIORITY[r.urgency],
        "category": [{"text": "referral"}],
        "code": {"text": r.specialty},
        "subject": ref("Patient", r.patient_id),
        "authoredOn": instant(r.created_at),
        "requester": ref("Organization", r.from_facility_id),
        "performer": [ref("Organization", r.to_facility_id)],
        "reasonCode": [{"text": r.reason}],
    }
    if r.observation_ids:
        resource["supportingInfo"] = [ref("Observation", o) for o in r.observation_ids]
    if r.outcome_note:
        resource["note"] = [{"text": r.outcome_note}]
    return resource


def consent(c: Consent) -> Resource:
    grantee = (
        ref("Practitioner", c.practitioner_id) if c.scope == "practitioner" else ref("Organization", c.facility_id)
    )
    provision: dict[str, Any] = {
        "type": "permit",
        "actor": [
            {
                "role": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}
                    ],
                    "text": f"{c.scope} (network: the organisation and the centres it refers to)"
                    if c.scope == "network"
                    else c.scope,
                },
                "reference": grantee,
            }
        ],
        "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
        "period": {"start": instant(c.granted_at)},
    }
    end = c.revoked_at or c.expires_at
    if end is not None:
        provision["period"]["end"] = instant(end)
    return {
        "resourceType": "Consent",
        "id": str(c.id),
        "meta": _meta(2 if c.revoked_at else 1, c.revoked_at or c.granted_at),
        "status": "inactive" if c.revoked_at else "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Consent Document"}]}],
        "patient": ref("Patient", c.patient_id),
        "dateTime": instant(c.granted_at),
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "verification": [
            {
                "verified": True,
                "verificationDate": instant(c.granted_at),
                "verifiedWith": ref("Patient", c.patient_id),
            }
        ],
        "sourceAttachment": {
            "title": f"consent given by {c.method}" + (f", witness {c.witness_name}" if c.witness_name else "")
        },
        "provision": provision,
    }
