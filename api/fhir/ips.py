"""The International Patient Summary (HL7 IPS IG, FHIR R4): a document Bundle whose first entry is
a Composition (LOINC 60591-5) with one section per kind of fact, each naming its resources.

The sections and what each holds are one table (SECTIONS). Problems, medications and allergies
are mandatory: when the record has nothing for one, the section says so with an emptyReason and
a narrative, as the IG asks (a "no known allergy" recorded as SNOMED CT 716186003 is an entry like
any other). Other sections appear only when they have entries.

Every reference in the document resolves inside it: the Composition names its resources by the
fullUrl of their entry, the resources keep their relative references (resolved against their
own fullUrl), and what they reference (the patient, facilities, practitioners) is included. A
reference to something a summary does not carry (the consultation an entry was recorded in) is
left out of the summarised resource, so a reader never meets a dangling one.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from api.fhir.clinical import Resource, instant, to_fhir
from domain.record.catalogue import LOINC
from domain.record.types import Entry

PATIENT_SUMMARY = "60591-5"
_EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
_XHTML = "http://www.w3.org/1999/xhtml"
# What a summarised resource may reference: the types the document includes.
INCLUDED_TYPES = ("Patient", "Organization", "Practitioner")
_CURRENT_PROBLEM = {"active", "recurrence", "relapse"}
_PAST_PROBLEM = {"inactive", "remission", "resolved"}


def _problem(e: Entry, statuses: set[str]) -> bool:
    return e.body.get("clinical_status") in statuses and e.body.get("verification_status") != "refuted"


def _medication_current(e: Entry, now: datetime) -> bool:
    """A prescription whose course has not ended (authored + duration), the medication in use."""
    return e.provenance.recorded_at + timedelta(days=int(e.body["duration_days"])) >= now


def _allergy_relevant(e: Entry) -> bool:
    return e.body.get("verification_status") != "refuted" and e.body.get("clinical_status") != "resolved"


def _is_vital_sign(resource: Resource) -> bool:
    codes = [c.get("code") for cat in resource.get("category", []) for c in cat.get("coding", [])]
    return "vital-signs" in codes


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    code: str  # LOINC
    display: str
    mandatory: bool
    kind: str  # the record kind its entries are
    keep: Callable[[Entry, Resource, datetime], bool]
    latest_per_code: bool = False  # observations: the most recent of each code


SECTIONS: tuple[Section, ...] = (
    Section("problems", "Problem list", "11450-4", "Problem list - Reported", True, "condition",
            lambda e, r, now: _problem(e, _CURRENT_PROBLEM)),
    Section("medications", "Medication summary", "10160-0", "History of Medication use Narrative", True,
            "prescription", lambda e, r, now: _medication_current(e, now)),
    Section("allergies", "Allergies and intolerances", "48765-2", "Allergies and adverse reactions Document", True,
            "allergy", lambda e, r, now: _allergy_relevant(e)),
    Section("immunizations", "Immunizations", "11369-6", "History of Immunization Narrative", False,
            "immunization", lambda e, r, now: True),
    Section("results", "Results", "30954-2", "Relevant diagnostic tests/laboratory data Narrative", False,
            "observation", lambda e, r, now: not _is_vital_sign(r), latest_per_code=True),
    Section("vital-signs", "Vital signs", "8716-3", "Vital signs", False, "observation",
            lambda e, r, now: _is_vital_sign(r), latest_per_code=True),
    Section("past-illness", "History of past illness", "11348-0", "History of Past illness Narrative", False,
            "condition", lambda e, r, now: _problem(e, _PAST_PROBLEM)),
)  # fmt: skip
KINDS = sorted({s.kind for s in SECTIONS})


def prune(value: Any) -> Any:
    """`value` without the references to types the document does not include (None: nothing left)."""
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and reference.partition("/")[0] not in INCLUDED_TYPES:
            return None
        kept = {k: p for k, v in value.items() if (p := prune(v)) is not None}
        return kept or None
    if isinstance(value, list):
        items = [p for v in value if (p := prune(v)) is not None]
        return items or None
    return value


def references(value: Any) -> Iterable[str]:
    """Every `reference` in a resource, depth first."""
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value["reference"]
        for v in value.values():
            yield from references(v)
    elif isinstance(value, list):
        for v in value:
            yield from references(v)


def _text(r: Resource, zone: ZoneInfo) -> str:
    """One line of a section's narrative: what the resource says, in words (days in `zone`)."""
    match r["resourceType"]:
        case "Condition":
            coding, status = r["code"]["coding"][0], r["clinicalStatus"]["coding"][0]["code"]
            return f"{coding.get('display') or coding['code']} ({coding['code']}), {status}"
        case "MedicationRequest":
            return f"{r['medicationCodeableConcept']['text']}: {r['dosageInstruction'][0]['text']}"
        case "AllergyIntolerance":
            line = f"{r['code']['text']}, {r['clinicalStatus']['coding'][0]['code']}"
            for reaction in r.get("reaction", []):
                line += f"; reaction: {reaction['manifestation'][0]['text']}"
                line += f" ({reaction['severity']})" if "severity" in reaction else ""
            return line
        case "Immunization":
            return f"{r['vaccineCode']['text']}, {r['status']}, {_day(r['occurrenceDateTime'], zone)}"
        case "Observation":
            name = r["code"]["coding"][0].get("display") or r["code"]["coding"][0]["code"]
            if "valueQuantity" in r:
                value = f"{_quantity(r['valueQuantity'])}"
            else:
                value = ", ".join(_quantity(c["valueQuantity"]) for c in r.get("component", []))
            return f"{name}: {value} ({_day(r['effectiveDateTime'], zone)})"
    raise AssertionError(f"no narrative for {r['resourceType']}")  # pragma: no cover - SECTIONS names the kinds


def _quantity(q: dict[str, Any]) -> str:
    return f"{q['value']:g} {q['unit']}"


def _day(value: datetime | str, zone: ZoneInfo) -> str:
    """The day a reader at the facility would name (times are stored UTC, shown in its zone)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.astimezone(zone).date().isoformat()


def _narrative(lines: list[str]) -> dict[str, str]:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return {"status": "generated", "div": f'<div xmlns="{_XHTML}"><ul>{items}</ul></div>'}


def _empty(section: Section) -> dict[str, Any]:
    return {
        "text": {
            "status": "generated",
            "div": f'<div xmlns="{_XHTML}"><p>No information about {html.escape(section.title.lower())}'
            " is recorded.</p></div>",
        },
        "emptyReason": {"coding": [{"system": _EMPTY_REASON, "code": "unavailable", "display": "Unavailable"}]},
    }


def sections(entries: list[Entry], now: datetime) -> list[tuple[Section, list[Resource]]]:
    """Each section with its resources (newest first), mandatory ones even when empty."""
    newest_first = sorted(entries, key=lambda e: (e.effective_at, e.seq), reverse=True)
    found: list[tuple[Section, list[Resource]]] = []
    for section in SECTIONS:
        chosen: list[Resource] = []
        seen_codes: set[str | None] = set()
        for e in newest_first:
            if e.kind != section.kind or e.status != "current":
                continue
            resource = to_fhir(e)
            if not section.keep(e, resource, now):
                continue
            if section.latest_per_code:
                if e.code in seen_codes:
                    continue
                seen_codes.add(e.code)
            chosen.append(prune(resource))
        if chosen or section.mandatory:
            found.append((section, chosen))
    return found


def document(
    base: str,
    patient: Resource,
    author: Resource,
    chosen: list[tuple[Section, list[Resource]]],
    referenced: list[Resource],
    zone: ZoneInfo,
    now: datetime | None = None,
) -> Resource:
    """The IPS document Bundle: the Composition, the patient, each section's resources, then what
    they reference (`referenced`: the author among them, loaded by the caller)."""
    now = now or datetime.now(UTC)

    def url(r: Resource) -> str:
        return f"{base}/fhir/{r['resourceType']}/{r['id']}"

    composition_id = uuid.uuid4()
    composition_sections = []
    for section, resources in chosen:
        body: dict[str, Any] = {
            "title": section.title,
            "code": {"coding": [{"system": LOINC, "code": section.code, "display": section.display}]},
        }
        if resources:
            body["text"] = _narrative([_text(r, zone) for r in resources])
            body["entry"] = [{"reference": url(r)} for r in resources]
        else:
            body |= _empty(section)
        composition_sections.append(body)
    stamp = instant(now)
    composition: Resource = {
        "resourceType": "Composition",
        "id": str(composition_id),
        "status": "final",
        "type": {"coding": [{"system": LOINC, "code": PATIENT_SUMMARY, "display": "Patient summary Document"}]},
        "subject": {"reference": url(patient)},
        "date": stamp,
        "author": [{"reference": url(author)}],
        "title": f"International Patient Summary of {patient_name(patient)}",
        "custodian": {"reference": url(author)},
        "section": composition_sections,
    }
    entries = [{"fullUrl": f"urn:uuid:{composition_id}", "resource": composition}]
    seen = set()
    for r in [patient, *(r for _, rs in chosen for r in rs), *referenced]:
        if url(r) not in seen:
            seen.add(url(r))
            entries.append({"fullUrl": url(r), "resource": r})
    return {
        "resourceType": "Bundle",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document",
        "timestamp": stamp,
        "entry": entries,
    }


def patient_name(patient: Resource) -> str:
    for name in patient.get("name", []):
        text = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip()
        if text:
            return str(text)
    return "the patient"
