"""Who did what, as FHIR: Provenance of each record entry version, AuditEvent of the trail."""

from __future__ import annotations

from api.fhir.clinical import BY_KIND, Resource, instant, ref
from domain.audit.export import AuditEvent
from domain.record.types import Entry

_DATA_OP = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_INTERACTION = {
    "read": ("read", "R"),
    "search": ("search-type", "E"),
    "create": ("create", "C"),
    "update": ("update", "U"),
    "correct": ("update", "U"),
    "entered_in_error": ("update", "U"),
}


def provenance_id(entry: Entry) -> str:
    return f"{entry.id}-v{entry.version}"


def provenance(entry: Entry) -> Resource:
    """Who recorded this version, for which facility, when, from which channel, and why."""
    resource_type = BY_KIND[entry.kind][0]
    activity = "CREATE" if entry.version == 1 else "NULLIFY" if entry.status == "entered_in_error" else "UPDATE"
    agent: dict[str, object] = {
        "type": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}
            ]
        },
        "role": [{"text": entry.provenance.author_role}],
        "who": {"identifier": {"system": "urn:spean:user", "value": str(entry.provenance.author_user_id)}},
    }
    if entry.provenance.facility_id is not None:
        agent["onBehalfOf"] = ref("Organization", entry.provenance.facility_id)
    resource: Resource = {
        "resourceType": "Provenance",
        "id": provenance_id(entry),
        # A Provenance describes one version and never changes: it has one version of its own.
        "meta": {"versionId": "1", "lastUpdated": instant(entry.provenance.recorded_at)},
        "target": [{"reference": f"{resource_type}/{entry.id}/_history/{entry.version}"}],
        "recorded": instant(entry.provenance.recorded_at),
        "activity": {"coding": [{"system": _DATA_OP, "code": activity}]},
        "agent": [agent],
        "policy": [f"urn:spean:channel:{entry.provenance.channel}"],
    }
    if entry.provenance.reason:
        resource["reason"] = [{"text": entry.provenance.reason}]
    return resource


def audit_event(e: AuditEvent) -> Resource:
    subtype, action = _INTERACTION.get(e.action, (None, "E"))
    who: dict[str, object] = {"requestor": True}
    if e.actor_user_id is not None:
        who["who"] = {"identifier": {"system": "urn:spean:user", "value": str(e.actor_user_id)}}
    if e.actor_role:
        who["role"] = [{"text": e.actor_role}]
    resource: Resource = {
        "resourceType": "AuditEvent",
        "id": str(e.id),
        "meta": {"versionId": "1", "lastUpdated": instant(e.at)},  # audit events are never changed
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "action": action,
        "recorded": instant(e.at),
        "outcome": "0" if e.outcome == "success" else "4",
        "agent": [who],
        "source": {"observer": {"display": "Spean"}, "site": str(e.facility_id) if e.facility_id else None},
        "entity": [],
    }
    if resource["source"]["site"] is None:
        del resource["source"]["site"]
    if subtype:
        resource["subtype"] = [{"system": "http://hl7.org/fhir/restful-interaction", "code": subtype}]
    else:
        resource["subtype"] = [{"system": "urn:spean:audit-action", "code": e.action}]
    if e.purpose:
        code = "ETREAT" if e.purpose == "break_glass" else "TREAT"
        resource["purposeOfEvent"] = [
            {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": code}],
                "text": e.purpose,
            }
        ]
    if e.patient_id is not None:
        resource["entity"].append({"what": ref("Patient", e.patient_id)})
    if e.resource_id is not None:
        resource["entity"].append(
            {"what": {"identifier": {"system": f"urn:spean:{e.resource_type}", "value": e.resource_id}}}
        )
    if not resource["entity"]:
        del resource["entity"]
    return resource
