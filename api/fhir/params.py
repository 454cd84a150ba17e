"""The FHIR search parameters of every type, declared once: name, FHIR type, the SQL it searches
(over the aliases of domain/search/finders.py), the path of a reference in the emitted resource
(for _include), and whether it sorts. Parsing (api/fhir/query.py), the SQL (domain/search) and the
CapabilityStatement (api/fhir/bundle.py) all read this table, so what is declared is what works.

Codes are searched as the resources carry them: the SQL of a status is built from the same
mapping that writes it (admin.APPOINTMENT_STATUS...), so a search matches what a read shows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from api.fhir import admin, vitals
from domain.record.catalogue import CVX, ICD10, LOCAL_VACCINE, LOINC, SNOMED
from domain.search.engine import Coding, Field, Id, Key, KeyKind, Moment, Ref, Strings, Text, Token

ParamType = Literal["date", "token", "string", "reference"]
_V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def lit(value: str) -> str:
    """A SQL string literal (for the fixed systems and codes of this table only)."""
    return "'" + value.replace("'", "''") + "'"


def case(expr: str, mapping: Mapping[str, str]) -> str:
    """The SQL of a code the emitter maps from a stored value."""
    whens = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in mapping.items())
    return f"(CASE {expr} {whens} END)"


@dataclass(frozen=True)
class Param:
    name: str
    type: ParamType
    field: Field
    doc: str
    path: str | None = None  # a reference's element in the resource (dotted), for _include
    sort: KeyKind | None = None  # sortable, on the field's (low) value
    reveals_errors: bool = False  # searching it also searches entries marked entered in error
    phone: bool = False  # values are phone numbers, normalised as the app API does
    identifier: bool = False  # system|value of a national system: the value normalised (domain.identifiers)
    required: bool = False

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.field.targets) if isinstance(self.field, Ref) else ()

    def key(self, desc: bool = False) -> Key:
        assert self.sort is not None
        if isinstance(self.field, Moment):
            return Key(f"coalesce({self.field.low}, 'infinity'::timestamptz)", "instant", desc)
        assert isinstance(self.field, Id)
        return Key(self.field.expr, self.field.kind, desc)


@dataclass(frozen=True)
class SearchType:
    name: str
    params: tuple[Param, ...]
    order: tuple[Key, ...]  # the default order; its last key is unique
    count: int = 50  # page size without _count
    max_count: int = 1000
    includes: tuple[str, ...] = ()  # "Source:param"
    revincludes: tuple[str, ...] = ()
    by_param: dict[str, Param] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_param", {p.name: p for p in self.params})


def _id(expr: str, kind: KeyKind = "uuid") -> Param:
    return Param("_id", "token", Id(expr, kind), "the logical id", sort=kind)


def _updated(expr: str) -> Param:
    return Param("_lastUpdated", "date", Moment(expr), "meta.lastUpdated", sort="instant")


def _ref(name: str, targets: dict[str, str], doc: str, path: str, present: str = "true") -> Param:
    return Param(name, "reference", Ref(targets, present), doc, path=path)


# --- the shared record (finders.entries: `e` record_entries) --------------------------------------

_ERROR = "e.status = 'entered_in_error'"
_SUBJECT = {"Patient": "e.patient_id = {}"}


def _record_common(resource_type: str, subject: bool = True) -> tuple[Param, ...]:
    common: tuple[Param, ...] = (
        _id("e.id"),
        _updated("e.recorded_at"),
        _ref("patient", _SUBJECT, "the patient (Patient/{id} or {id})", "subject"),
    )
    if subject:
        common += (_ref("subject", _SUBJECT, "the patient the entry is about", "subject"),)
    if resource_type != "Encounter":
        common += (
            _ref(
                "encounter",
                {"Encounter": "e.encounter_id = {}"},
                "the consultation it was recorded in",
                "encounter",
                "e.encounter_id IS NOT NULL",
            ),
        )
    return common


def _status(system: str, sql: str) -> Param:
    return Param("status", "token", Token((Coding(lit(system), sql),)), "the status", reveals_errors=True)


_SUBJECT_INCLUDES = ("subject", "patient")
# An observation also carries its vital-sign profile's own code (SpO2: 2708-6), searchable too;
# '' where it has none, never NULL, so that `code:not=` stays true or false.
_PROFILE_CODE = f"COALESCE({case('e.code', {c: extra for c, (extra, _) in vitals.EXTRA_CODINGS.items()})}, '')"
OBSERVATION = SearchType(
    "Observation",
    (
        *_record_common("Observation"),
        Param(
            "code",
            "token",
            Token((Coding(lit(LOINC), "e.code"), Coding(lit(LOINC), _PROFILE_CODE))),
            "LOINC code (system|code, |code or code)",
        ),
        Param(
            "category",
            "token",
            Token((Coding(lit(vitals.CATEGORY_SYSTEM), vitals.category_sql("e.code")),)),
            "vital-signs, laboratory or exam",
        ),
        Param("date", "date", Moment("e.effective_at"), "effectiveDateTime", sort="instant"),
        _status(
            "http://hl7.org/fhir/observation-status",
            f"(CASE WHEN {_ERROR} THEN 'entered-in-error' WHEN e.version > 1 THEN 'amended' ELSE 'final' END)",
        ),
    ),
    order=(Key("e.seq", "int"),),
    count=100,
    includes=("Observation:subject", "Observation:patient", "Observation:encounter"),
)
CONDITION = SearchType(
    "Condition",
    (
        *_record_common("Condition"),
        Param("code", "token", Token((Coding(lit(ICD10), "e.code"),)), "ICD-10 code"),
        Param(
            "clinical-status",
            "token",
            Token(
                (
                    Coding(
                        lit("http://terminology.hl7.org/CodeSystem/condition-clinical"),
                        f"(CASE WHEN {_ERROR} THEN NULL ELSE e.body->>'clinical_status' END)",
                    ),
                )
            ),
            "active, recurrence, relapse, inactive, remission, resolved",
        ),
        Param(
            "verification-status",
            "token",
            Token(
                (
                    Coding(
                        lit("http://terminology.hl7.org/CodeSystem/condition-ver-status"),
                        f"(CASE WHEN {_ERROR} THEN 'entered-in-error' ELSE e.body->>'verification_status' END)",
                    ),
                )
            ),
            "confirmed, provisional..., or entered-in-error",
            reveals_errors=True,
        ),
        Param("onset-date", "date", Moment("(e.body->>'onset')::timestamptz"), "onsetDateTime", sort="instant"),
        Param("recorded-date", "date", Moment("e.recorded_at"), "recordedDate", sort="instant"),
    ),
    order=(Key("e.seq", "int"),),
    count=100,
    includes=("Condition:subject", "Condition:patient", "Condition:encounter"),
)
ENCOUNTER = SearchType(
    "Encounter",
    (
        *_record_common("Encounter"),
        Param(
            "date",
            "date",
            Moment("e.effective_at", "coalesce((e.body->>'ended_at')::timestamptz, e.effective_at)"),
            "period (an encounter without a recorded end is its start instant)",
            sort="instant",
        ),
        _status(
            "http://hl7.org/fhir/encounter-status", f"(CASE WHEN {_ERROR} THEN 'entered-in-error' ELSE 'finished' END)"
        ),
        Param(
            "class",
            "token",
            Token((Coding(lit(_V3_ACT), "(CASE WHEN e.body->>'mode' = 'in_person' THEN 'AMB' ELSE 'VR' END)"),)),
            "AMB (in person) or VR (remote)",
        ),
        _ref(
            "appointment",
            {"Appointment": "e.appointment_id = {}"},
            "the booked consultation",
            "appointment",
            "e.appointment_id IS NOT NULL",
        ),
        _ref(
            "service-provider",
            {"Organization": "e.facility_id = {}"},
            "the facility",
            "serviceProvider",
            "e.facility_id IS NOT NULL",
        ),
    ),
    order=(Key("e.seq", "int"),),
    count=100,
    includes=("Encounter:subject", "Encounter:patient", "Encounter:appointment", "Encounter:service-provider"),
    revincludes=("Observation:encounter", "Condition:encounter", "MedicationRequest:encounter"),
)
MEDICATION_REQUEST = SearchType(
    "MedicationRequest",
    (
        *_record_common("MedicationRequest"),
        _status(
            "http://hl7.org/fhir/CodeSystem/medicationrequest-status",
            f"(CASE WHEN {_ERROR} THEN 'entered-in-error' ELSE 'active' END)",
        ),
        Param(
            "intent",
            "token",
            Token((Coding(lit("http://hl7.org/fhir/CodeSystem/medicationrequest-intent"), "'order'"),)),
            "order",
        ),
        Param("code", "token", Token((Coding("NULL", "e.body->>'drug_code'"),)), "the drug's code"),
        Param("authoredon", "date", Moment("e.recorded_at"), "authoredOn", sort="instant"),
    ),
    order=(Key("e.seq", "int"),),
    count=100,
    includes=("MedicationRequest:subject", "MedicationRequest:patient", "MedicationRequest:encounter"),
)
# --- allergies and immunizations (fhir-ips): the record's rows, their patient at `patient` ---------


def _patient_entry() -> tuple[Param, ...]:
    """R4 names the patient of these types `patient` only (no subject, no encounter parameter)."""
    return (_id("e.id"), _updated("e.recorded_at"), _ref("patient", _SUBJECT, "the patient", "patient"))


def _body_token(system: str, key: str, doc: str, code: str | None = None) -> Param:
    """A code kept in the body (the resource shows it with `system`)."""
    return Param(key.replace("_", "-"), "token", Token((Coding(lit(system), code or f"e.body->>{lit(key)}"),)), doc)


ALLERGY_INTOLERANCE = SearchType(
    "AllergyIntolerance",
    (
        *_patient_entry(),
        Param("code", "token", Token((Coding(lit(SNOMED), "e.code"),)), "SNOMED CT code of the substance"),
        _body_token(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            "clinical_status",
            "active, inactive, resolved (none for an entry entered in error: ait-2)",
            f"(CASE WHEN {_ERROR} THEN NULL ELSE e.body->>'clinical_status' END)",
        ),
        Param(
            "verification-status",
            "token",
            Token(
                (
                    Coding(
                        lit("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"),
                        f"(CASE WHEN {_ERROR} THEN 'entered-in-error' ELSE e.body->>'verification_status' END)",
                    ),
                )
            ),
            "unconfirmed, confirmed, refuted, or entered-in-error",
            reveals_errors=True,
        ),
        _body_token("http://hl7.org/fhir/allergy-intolerance-category", "category", "food, medication, ..."),
        _body_token("http://hl7.org/fhir/allergy-intolerance-criticality", "criticality", "low, high, ..."),
        Param("onset", "date", Moment("(e.body->>'onset')::timestamptz"), "onsetDateTime", sort="instant"),
        Param("date", "date", Moment("e.recorded_at"), "recordedDate", sort="instant"),
    ),
    order=(Key("e.seq", "int"),),
    count=100,
    includes=("AllergyIntolerance:patient",),
)
_VACCINE_SYSTEM = f"(CASE WHEN e.body->>'code_system' = 'local' THEN {lit(LOCAL_VACCINE)} ELSE {lit(CVX)} END)"
IMMUNIZATION = SearchType(
    "Immunization",
    (
        *_patient_entry(),
        Param("vaccine-code", "token", Token((Coding(_VACCINE_SYSTEM, "e.code"),)), "CVX or local code of the vaccine"),
        Param("date", "date", Moment("e.effective_at"), "occurrenceDateTime", sort="instant"),
        _status(
            "http://hl7.org/fhir/event-status",
            f"(CASE WHEN {_ERROR} THEN 'entered-in-error' ELSE e.body->>'status' END)",
        ),
        _ref(
            "performer",
            {"Organization": "e.facility_id = {}"},
            "the facility that gave it",
            "performer.actor",
            "e.facility_id IS NOT NULL",
        ),
    ),
    order=(Key("e.seq", "int"),),
    count=100,
    includes=("Immunization:patient", "Immunization:performer"),
)
# --- end fhir-ips ----------------------------------------------------------------------------------

_TARGETS = {
    name: f"e.id = {{}} AND e.kind = {lit(kind)}"
    for name, kind in (
        ("Encounter", "encounter"),
        ("Observation", "observation"),
        ("Condition", "condition"),
        ("MedicationRequest", "prescription"),
        ("AllergyIntolerance", "allergy"),
        ("Immunization", "immunization"),
    )
}
PROVENANCE = SearchType(
    "Provenance",
    (
        _id("(e.id::text || '-v' || e.version)", "text"),
        _updated("e.recorded_at"),
        _ref("patient", _SUBJECT, "the patient whose record entry it is", "target"),
        _ref("target", _TARGETS, "the entry (every version of it)", "target"),
        Param("recorded", "date", Moment("e.recorded_at"), "recorded", sort="instant"),
    ),
    order=(Key("e.seq", "int"),),
    count=100,
)

# --- people and places (finders.patient_list `p`, practitioner_list `p`, facility_list `f`) -------

_NAMES = "FROM jsonb_array_elements(p.names) n WHERE true"
_GIVEN = (
    "FROM jsonb_array_elements(p.names) n"
    " CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(n->'given', '[]'::jsonb)) g(v) WHERE true"
)
_ANY_NAME_PART = (
    "FROM jsonb_array_elements(p.names) n"
    " LEFT JOIN LATERAL jsonb_array_elements_text(coalesce(n->'given', '[]'::jsonb)) g(v) ON true WHERE true"
)
_BIRTH_LOW = "(coalesce(p.birth_date, make_date(p.birth_year, 1, 1))::timestamp AT TIME ZONE 'UTC')"
_BIRTH_HIGH = (
    "((coalesce(p.birth_date + 1, make_date(p.birth_year + 1, 1, 1))::timestamp AT TIME ZONE 'UTC')"
    " - interval '1 microsecond')"
)
PATIENT = SearchType(
    "Patient",
    (
        _id("p.id"),
        _updated("p.updated_at"),
        Param(
            "name",
            "string",
            Text(
                Strings(("p.search_text",), folded=True, words=True),
                exact=Strings(("n->>'text'", "n->>'family'", "g.v"), source=_ANY_NAME_PART),
            ),
            "any part of a name: starts a word of it (case and Latin accents ignored)",
        ),
        Param("family", "string", Text(Strings(("n->>'family'",), source=_NAMES)), "family name"),
        Param("given", "string", Text(Strings(("g.v",), source=_GIVEN)), "given name"),
        Param(
            "identifier",
            "token",
            Token((Coding("x.system", "x.value"),), source="FROM patient_identifiers x WHERE x.patient_id = p.id"),
            "system|value, or a value in any system",
            identifier=True,
        ),
        Param(
            "gender",
            "token",
            Token((Coding(lit("http://hl7.org/fhir/administrative-gender"), "coalesce(p.sex, 'unknown')"),)),
            "female, male, other, unknown",
        ),
        Param(
            "birthdate",
            "date",
            Moment(_BIRTH_LOW, _BIRTH_HIGH),
            "birthDate (a year alone is that year)",
            sort="instant",
        ),
        Param(
            "phone", "token", Token((Coding("NULL", "p.phone"),)), "phone number, national or international", phone=True
        ),
        _ref("organization", {"Organization": "p.home_facility_id = {}"}, "the home facility", "managingOrganization"),
    ),
    order=(Key("p.id", "uuid"),),
    includes=("Patient:organization",),
    revincludes=(
        "Observation:subject",
        "Observation:patient",
        "Condition:subject",
        "Condition:patient",
        "Encounter:subject",
        "Encounter:patient",
        "MedicationRequest:subject",
        "MedicationRequest:patient",
        "Appointment:patient",
        "Appointment:actor",
        "ServiceRequest:subject",
        "ServiceRequest:patient",
        "Consent:patient",
        "AllergyIntolerance:patient",
        "Immunization:patient",
    ),
)
PRACTITIONER = SearchType(
    "Practitioner",
    (
        _id("p.id"),
        _updated("p.created_at"),
        Param("name", "string", Text(Strings(("p.name",), words=True)), "starts a word of the name"),
    ),
    order=(Key("p.id", "uuid"),),
    revincludes=("Appointment:practitioner", "Appointment:actor", "Schedule:actor"),
)
SCHEDULE = SearchType(
    "Schedule",
    (
        _id("p.id"),
        _updated("p.created_at"),
        _ref(
            "actor",
            {
                "Practitioner": "p.id = {}",
                "Location": "EXISTS (SELECT 1 FROM memberships mm WHERE mm.user_id = p.user_id"
                " AND mm.role IN ('specialist', 'clinician') AND mm.facility_id = {})",
            },
            "Practitioner/{id}, or Location/{id}: the practitioners consulting there",
            "actor",
        ),
    ),
    order=(Key("p.id", "uuid"),),
    includes=("Schedule:actor",),
)
ORGANIZATION = SearchType(
    "Organization",
    (
        _id("f.id"),
        _updated("f.updated_at"),
        Param("name", "string", Text(Strings(("f.name",), words=True)), "starts a word of the name"),
        Param(
            "type",
            "token",
            Token(
                (
                    Coding(lit("http://terminology.hl7.org/CodeSystem/organization-type"), "'prov'"),
                    Coding(lit(admin.FACILITY_KIND), "f.kind"),
                )
            ),
            "prov, or the facility kind: health_post, health_centre, district_hospital, reference_centre",
        ),
    ),
    order=(Key("f.id", "uuid"),),
)
LOCATION = SearchType(
    "Location",
    (
        _id("f.id"),
        _updated("f.updated_at"),
        Param("name", "string", Text(Strings(("f.name",), words=True)), "starts a word of the name"),
        _ref("organization", {"Organization": "f.id = {}"}, "the facility", "managingOrganization"),
    ),
    order=(Key("f.id", "uuid"),),
)

# --- workflow (finders.appointment_list `a`, referral_list `r`, consent_list `c`) ----------------

APPOINTMENT = SearchType(
    "Appointment",
    (
        _id("a.id"),
        _updated("a.updated_at"),
        Param("date", "date", Moment("a.start_at"), "start", sort="instant"),
        Param(
            "status",
            "token",
            Token((Coding(lit("http://hl7.org/fhir/appointmentstatus"), case("a.status", admin.APPOINTMENT_STATUS)),)),
            "booked, checked-in, arrived, fulfilled, cancelled, noshow",
        ),
        _ref("patient", {"Patient": "a.patient_id = {}"}, "the patient", "participant.actor"),
        _ref("practitioner", {"Practitioner": "a.practitioner_id = {}"}, "the practitioner", "participant.actor"),
        _ref(
            "actor",
            {"Patient": "a.patient_id = {}", "Practitioner": "a.practitioner_id = {}"},
            "Patient/{id} or Practitioner/{id}",
            "participant.actor",
        ),
    ),
    order=(Key("a.start_at", "instant"), Key("a.id", "uuid")),
    includes=("Appointment:patient", "Appointment:practitioner", "Appointment:actor"),
    revincludes=("Encounter:appointment",),
)
SERVICE_REQUEST = SearchType(
    "ServiceRequest",
    (
        _id("r.id"),
        _updated("r.updated_at"),
        _ref("patient", {"Patient": "r.patient_id = {}"}, "the patient", "subject"),
        _ref("subject", {"Patient": "r.patient_id = {}"}, "the patient", "subject"),
        Param(
            "status",
            "token",
            Token((Coding(lit("http://hl7.org/fhir/request-status"), case("r.status", admin.REFERRAL_STATUS)),)),
            "active, completed, revoked",
        ),
        Param(
            "priority",
            "token",
            Token((Coding(lit("http://hl7.org/fhir/request-priority"), case("r.urgency", admin.PRIORITY)),)),
            "routine, urgent, stat",
        ),
        Param("authored", "date", Moment("r.created_at"), "authoredOn", sort="instant"),
        _ref("requester", {"Organization": "r.from_facility_id = {}"}, "the referring facility", "requester"),
        _ref("performer", {"Organization": "r.to_facility_id = {}"}, "the reference centre", "performer"),
    ),
    order=(Key("r.created_at", "instant"), Key("r.id", "uuid")),
    includes=(
        "ServiceRequest:subject",
        "ServiceRequest:patient",
        "ServiceRequest:requester",
        "ServiceRequest:performer",
    ),
)
CONSENT = SearchType(
    "Consent",
    (
        _id("c.id"),
        _updated("coalesce(c.revoked_at, c.granted_at)"),
        _ref("patient", {"Patient": "c.patient_id = {}"}, "the patient", "patient"),
        Param(
            "status",
            "token",
            Token(
                (
                    Coding(
                        lit("http://hl7.org/fhir/consent-state-codes"),
                        "(CASE WHEN c.revoked_at IS NULL THEN 'active' ELSE 'inactive' END)",
                    ),
                )
            ),
            "active or inactive",
        ),
        Param("date", "date", Moment("c.granted_at"), "dateTime", sort="instant"),
    ),
    order=(Key("c.granted_at", "instant"), Key("c.id", "uuid")),
    includes=("Consent:patient",),
)

# --- audit and time (finders.audit_list `ev`; Slot is computed: searched in Python) ---------------

AUDIT_EVENT = SearchType(
    "AuditEvent",
    (
        _id("ev.id", "int"),
        _updated("ev.at"),
        Param("site", "token", Id("ev.facility_id"), "the facility whose trail (required; its admins)", required=True),
        Param("date", "date", Moment("ev.at"), "recorded", sort="instant"),
        _ref("patient", {"Patient": "ev.patient_id = {}"}, "the patient", "entity.what", "ev.patient_id IS NOT NULL"),
    ),
    order=(Key("ev.id", "int"),),
    count=100,
)
SLOT = SearchType(
    "Slot",
    (
        _id("id", "text"),
        Param(
            "schedule", "reference", Ref({"Schedule": "{}"}, "true"), "Schedule/{id}", path="schedule", required=True
        ),
        Param(
            "start", "date", Moment("start"), "start (free slots, computed for at most 62 days at once)", sort="instant"
        ),
    ),
    order=(Key("start", "instant"), Key("id", "text")),
    count=500,
    max_count=2000,
    includes=("Slot:schedule",),
)

TYPES: dict[str, SearchType] = {
    t.name: t
    for t in (
        PATIENT,
        PRACTITIONER,
        ORGANIZATION,
        LOCATION,
        SCHEDULE,
        SLOT,
        APPOINTMENT,
        SERVICE_REQUEST,
        CONSENT,
        ENCOUNTER,
        OBSERVATION,
        CONDITION,
        MEDICATION_REQUEST,
        ALLERGY_INTOLERANCE,
        IMMUNIZATION,
        PROVENANCE,
        AUDIT_EVENT,
    )
}
