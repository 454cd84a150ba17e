"""The shape of the transaction Bundle this server accepts, decoded strictly (api/body.py).

Only the elements the transaction reads are declared, and the codes a client may send (an
Observation's status); other elements of the resources (meta, text...) are ignored, as FHIR
allows. A wrong shape (a name that is a string, an entry that is a list), a resource type other
than Patient or Observation, or a code outside its value set (gender, telecom system, status) is
refused while decoding, naming the element, e.g. `entry[1].resource.gender`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from domain.fields import Code, Phone, ShortText, Uri

__all__ = ["Bundle", "FhirObservation", "FhirPatient"]

# FHIR `date`: YYYY, YYYY-MM or YYYY-MM-DD (the day itself is checked when it is read).
FhirDate = Annotated[str, msgspec.Meta(max_length=10, pattern=r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$")]
Few = msgspec.Meta(max_length=20)


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


class ContactPoint(msgspec.Struct, kw_only=True):
    system: Literal["phone", "fax", "email", "pager", "url", "sms", "other"] | None = None
    value: Phone | None = None


class Identifier(msgspec.Struct, kw_only=True):
    system: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class FhirPatient(msgspec.Struct, kw_only=True, tag_field="resourceType", tag="Patient"):
    name: Annotated[list[HumanName], Few] = []
    gender: Literal["male", "female", "other", "unknown"] = "unknown"
    birthDate: FhirDate | None = None
    telecom: Annotated[list[ContactPoint], Few] = []
    identifier: Annotated[list[Identifier], Few] = []
    managingOrganization: Reference | None = None


class Component(msgspec.Struct, kw_only=True):
    code: CodeableConcept
    valueQuantity: Quantity | None = None


class FhirObservation(msgspec.Struct, kw_only=True, tag_field="resourceType", tag="Observation"):
    # Read only to refuse what is not a FHIR ObservationStatus; the record keeps its own status.
    status: (
        Literal[
            "registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"
        ]
        | None
    ) = None
    code: CodeableConcept
    subject: Reference | None = None
    valueQuantity: Quantity | None = None
    component: Annotated[list[Component], Few] | None = None
    effectiveDateTime: datetime | None = None


class EntryRequest(msgspec.Struct, kw_only=True):
    method: Literal["POST"]  # this server creates in a transaction; nothing else
    url: Uri | None = None


class Entry(msgspec.Struct, kw_only=True):
    resource: FhirPatient | FhirObservation
    request: EntryRequest
    fullUrl: Uri | None = None


class Bundle(msgspec.Struct, kw_only=True, tag_field="resourceType", tag="Bundle"):
    type: Code
    entry: Annotated[list[Entry], msgspec.Meta(max_length=500)] = []
