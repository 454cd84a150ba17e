"""What the record holds: the input of each kind of entry (a tagged union on `kind`) and the
stored entry with its version, status and provenance."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

Kind = Literal["encounter", "observation", "condition", "prescription", "note", "attachment", "allergy", "immunization"]
EntryStatus = Literal["current", "superseded", "entered_in_error"]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class EncounterIn(msgspec.Struct, kw_only=True, tag="encounter", tag_field="kind"):
    mode: Literal["video", "audio", "async", "in_person"] = "in_person"
    reason: Text | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    appointment_id: uuid.UUID | None = None  # set by the server when completing a consultation


class _InEncounter(msgspec.Struct, kw_only=True):
    encounter_id: uuid.UUID | None = None  # the consultation it belongs to, if any


class Component(msgspec.Struct, kw_only=True):
    code: Short
    value: float
    unit: Short
    display: Short | None = None


class ObservationIn(_InEncounter, tag="observation", tag_field="kind"):
    """A LOINC-coded measurement: a value with its UCUM unit, or (blood pressure panel) components."""

    code: Short
    value: float | None = None
    unit: Short | None = None
    components: Annotated[list[Component], msgspec.Meta(max_length=20)] | None = None
    effective_at: datetime | None = None
    display: Short | None = None  # filled from the catalogue


class ConditionIn(_InEncounter, tag="condition", tag_field="kind"):
    code: Short  # ICD-10, e.g. "I10" or "J45.9"
    display: Short | None = None
    clinical_status: Literal["active", "recurrence", "relapse", "inactive", "remission", "resolved"] = "active"
    verification_status: Literal["unconfirmed", "provisional", "differential", "confirmed", "refuted"] = "confirmed"
    onset: datetime | None = None
    note: Text | None = None


class PrescriptionIn(_InEncounter, tag="prescription", tag_field="kind"):
    drug: Short
    dose: Short  # "500 mg", "1 tablet"
    route: Literal["oral", "intravenous", "intramuscular", "subcutaneous", "topical", "inhaled", "rectal", "sublingual"]
    frequency: Short  # "3 times a day"
    duration_days: Annotated[int, msgspec.Meta(ge=1, le=3650)]
    drug_code: Short | None = None  # e.g. an RxNorm or national formulary code
    instructions: Text | None = None


class NoteIn(_InEncounter, tag="note", tag_field="kind"):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=20000)]
    category: Literal["progress", "advice", "plan", "history", "other"] = "progress"


class AllergyIn(_InEncounter, tag="allergy", tag_field="kind"):
    """An allergy or intolerance: what to (free text, always), coded in SNOMED CT when known.
    "No known allergy" is itself a SNOMED CT code (716186003), as the IPS records it."""

    substance: Short  # "Penicillin", "Peanuts": what a reader sees whatever the coding
    snomed_code: Short | None = None  # SNOMED CT concept id of the substance (or of "no known ...")
    category: Literal["food", "medication", "environment", "biologic"] | None = None
    criticality: Literal["low", "high", "unable-to-assess"] | None = None
    clinical_status: Literal["active", "inactive", "resolved"] = "active"
    verification_status: Literal["unconfirmed", "confirmed", "refuted"] = "confirmed"
    reaction: Short | None = None  # the manifestation, e.g. "hives"
    severity: Literal["mild", "moderate", "severe"] | None = None  # of that reaction
    onset: datetime | None = None
    note: Text | None = None


class ImmunizationIn(_InEncounter, tag="immunization", tag_field="kind"):
    """A vaccine given (or, with status not-done, not given): free text, coded in CVX or in the
    country's own vaccine code system (`code_system` "local")."""

    vaccine: Short  # "Measles-rubella", "BCG"
    vaccine_code: Short | None = None
    code_system: Literal["cvx", "local"] = "cvx"
    status: Literal["completed", "not-done"] = "completed"
    occurred_at: datetime | None = None  # when given; now when absent
    dose_number: Annotated[int, msgspec.Meta(ge=1, le=20)] | None = None
    lot_number: Short | None = None
    not_done_reason: Short | None = None  # with status not-done only
    note: Text | None = None


EntryIn = EncounterIn | ObservationIn | ConditionIn | PrescriptionIn | NoteIn | AllergyIn | ImmunizationIn


class Provenance(msgspec.Struct, kw_only=True):
    author_user_id: uuid.UUID
    author_role: str
    facility_id: uuid.UUID | None
    channel: str
    recorded_at: datetime
    reason: str | None


class Entry(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    version: int
    patient_id: uuid.UUID
    kind: Kind
    status: EntryStatus
    encounter_id: uuid.UUID | None
    appointment_id: uuid.UUID | None
    code: str | None
    effective_at: datetime
    body: dict[str, Any]
    provenance: Provenance
    seq: int
