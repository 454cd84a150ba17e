"""The shapes of the resources this server accepts (create, update, Bundles, $validate), decoded
strictly (api/body.py): Patient, Encounter, Observation, Condition, MedicationRequest,
AllergyIntolerance and Immunization.

Only the elements the record reads are declared, with the record's own bounds, and the codes a
client may send; other elements (meta, text, what the server derives: performer, issued...) are
ignored, as FHIR allows, so a resource read from this server can be sent back as it is. A wrong
shape, a resource type other than these, or a code outside its value set is refused while
decoding, naming the element (`resource.gender`, `entry[1].resource.status`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from domain.fields import Code, LongText, Phone, ShortText, Uri

__all__ = [
    "FhirAllergyIntolerance",
    "FhirCondition",
    "FhirEncounter",
    "FhirImmunization",
    "FhirMedicationRequest",
    "FhirObservation",
    "FhirPatient",
    "FhirResource",
]

# FHIR `date`: YYYY, YYYY-MM or YYYY-MM-DD (the day itself is checked when it is read).
FhirDate = Annotated[str, msgspec.Meta(max_length=10, pattern=r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$")]
# FHIR `id`: what a client may send as a resource's id (this server's ids are UUIDs).
FhirId = Annotated[str, msgspec.Meta(max_length=64, pattern=r"^[A-Za-z0-9\-\.]{1,64}$")]
Few = msgspec.Meta(max_length=20)
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Reference(msgspec.Struct, kw_only=True):
    reference: Uri | None = None


class Coding(msgspec.Struct, kw_only=True):
    system: Uri | None = None
    code: Code | None = None
    display: ShortText | None = None


class CodeableConcept(msgspec.Struct, kw_only=True):
    coding: Annotated[list[Coding], Few] = []
    text: ShortText | None = None


class Quantity(msgspec.Struct, kw_only=True):
    value: float | None = None
    unit: Code | None = None
    system: Uri | None = None
    code: Code | None = None


class HumanName(msgspec.Struct, kw_only=True):
    text: ShortText | None = None
    family: ShortText | None = None
    given: Annotated[list[ShortText], Few] = []
    use: Literal["usual", "official", "temp", "nickname", "anonymous", "old", "maiden"] | None = None


class ContactPoint(msgspec.Struct, kw_only=True):
    system: Literal["phone", "fax", "email", "pager", "url", "sms", "other"] | None = None
    value: Phone | None = None


class Identifier(msgspec.Struct, kw_only=True):
    system: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class Communication(msgspec.Struct, kw_only=True):
    language: CodeableConcept
    preferred: bool | None = None


class _Resource(msgspec.Struct, kw_only=True, tag_field="resourceType"):
    id: FhirId | None = None


class FhirPatient(_Resource, kw_only=True, tag="Patient"):
    name: Annotated[list[HumanName], Few] = []
    gender: Literal["male", "female", "other", "unknown"] = "unknown"
    birthDate: FhirDate | None = None
    telecom: Annotated[list[ContactPoint], Few] = []
    identifier: Annotated[list[Identifier], Few] = []
    managingOrganization: Reference | None = None
    communication: Annotated[list[Communication], Few] = []


class Component(msgspec.Struct, kw_only=True):
    code: CodeableConcept
    valueQuantity: Quantity | None = None


class FhirObservation(_Resource, kw_only=True, tag="Observation"):
    # Read to refuse what is not a FHIR ObservationStatus, and entered-in-error on an update.
    status: (
        Literal[
            "registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"
        ]
        | None
    ) = None
    code: CodeableConcept
    subject: Reference | None = None
    encounter: Reference | None = None
    valueQuantity: Quantity | None = None
    component: Annotated[list[Component], Few] | None = None
    effectiveDateTime: datetime | None = None
    effectivePeriod: Period | None = None  # the vital-signs profiles allow either


class Annotation(msgspec.Struct, kw_only=True):
    text: Text


class FhirCondition(_Resource, kw_only=True, tag="Condition"):
    code: CodeableConcept
    subject: Reference | None = None
    encounter: Reference | None = None
    clinicalStatus: CodeableConcept | None = None
    verificationStatus: CodeableConcept | None = None
    onsetDateTime: datetime | None = None
    note: Annotated[list[Annotation], msgspec.Meta(max_length=1)] = []  # the record keeps one note


class Duration(msgspec.Struct, kw_only=True):
    value: float | None = None
    unit: Code | None = None
    system: Uri | None = None
    code: Code | None = None


class TimingRepeat(msgspec.Struct, kw_only=True):
    boundsDuration: Duration | None = None


class Timing(msgspec.Struct, kw_only=True):
    code: CodeableConcept | None = None
    repeat: TimingRepeat | None = None


class DoseAndRate(msgspec.Struct, kw_only=True):
    doseQuantity: Quantity | None = None


class Dosage(msgspec.Struct, kw_only=True):
    text: LongText | None = None
    route: CodeableConcept | None = None
    timing: Timing | None = None
    doseAndRate: Annotated[list[DoseAndRate], Few] = []
    patientInstruction: Text | None = None


class DispenseRequest(msgspec.Struct, kw_only=True):
    expectedSupplyDuration: Duration | None = None


class FhirMedicationRequest(_Resource, kw_only=True, tag="MedicationRequest"):
    status: Literal["active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"]
    intent: Literal[
        "proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option"
    ]
    medicationCodeableConcept: CodeableConcept
    subject: Reference | None = None
    encounter: Reference | None = None
    dosageInstruction: Annotated[list[Dosage], msgspec.Meta(max_length=1)] = []  # the record keeps one
    dispenseRequest: DispenseRequest | None = None


class Coded(msgspec.Struct, kw_only=True):
    """A bare Coding (Encounter.class is one in R4)."""

    system: Uri | None = None
    code: Code | None = None


class ReasonText(msgspec.Struct, kw_only=True):
    text: Text | None = None


class Period(msgspec.Struct, kw_only=True):
    start: datetime | None = None
    end: datetime | None = None


class FhirEncounter(_Resource, kw_only=True, tag="Encounter", rename={"class_": "class"}):
    status: Literal[
        "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error",
        "unknown",
    ]  # fmt: skip
    class_: Coded
    subject: Reference | None = None
    period: Period | None = None
    reasonCode: Annotated[list[ReasonText], msgspec.Meta(max_length=1)] = []  # the record keeps one reason


class Reaction(msgspec.Struct, kw_only=True):
    manifestation: Annotated[list[CodeableConcept], msgspec.Meta(max_length=1)] = []  # the record keeps one
    severity: Literal["mild", "moderate", "severe"] | None = None


class FhirAllergyIntolerance(_Resource, kw_only=True, tag="AllergyIntolerance"):
    # Its patient is `patient`, not `subject` (R4).
    patient: Reference | None = None
    encounter: Reference | None = None
    clinicalStatus: CodeableConcept | None = None
    verificationStatus: CodeableConcept | None = None
    category: Annotated[list[Literal["food", "medication", "environment", "biologic"]], msgspec.Meta(max_length=1)] = []
    criticality: Literal["low", "high", "unable-to-assess"] | None = None
    code: CodeableConcept | None = None
    onsetDateTime: datetime | None = None
    reaction: Annotated[list[Reaction], msgspec.Meta(max_length=1)] = []  # the record keeps one reaction
    note: Annotated[list[Annotation], msgspec.Meta(max_length=1)] = []


class ProtocolApplied(msgspec.Struct, kw_only=True):
    doseNumberPositiveInt: Annotated[int, msgspec.Meta(ge=1)] | None = None


class FhirImmunization(_Resource, kw_only=True, tag="Immunization"):
    status: Literal["completed", "entered-in-error", "not-done"]
    statusReason: CodeableConcept | None = None
    vaccineCode: CodeableConcept
    patient: Reference | None = None
    encounter: Reference | None = None
    occurrenceDateTime: datetime | None = None
    lotNumber: Short | None = None
    note: Annotated[list[Annotation], msgspec.Meta(max_length=1)] = []
    protocolApplied: Annotated[list[ProtocolApplied], msgspec.Meta(max_length=1)] = []  # the record keeps one dose


FhirResource = (
    FhirPatient | FhirObservation | FhirCondition | FhirMedicationRequest | FhirEncounter | FhirAllergyIntolerance
    | FhirImmunization
)  # fmt: skip
# resourceType -> shape, for the routes that take one type (POST /fhir/{type}, PUT, $validate)
SHAPES: dict[str, type[FhirResource]] = {
    "Patient": FhirPatient,
    "Observation": FhirObservation,
    "Condition": FhirCondition,
    "MedicationRequest": FhirMedicationRequest,
    "Encounter": FhirEncounter,
    "AllergyIntolerance": FhirAllergyIntolerance,
    "Immunization": FhirImmunization,
}
