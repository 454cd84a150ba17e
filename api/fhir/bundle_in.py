"""The shape of the batch and transaction Bundles this server accepts, decoded strictly
(api/body.py); the resources' own shapes are in resources_in.

An entry is a POST (create; `ifNoneExist` makes it conditional), a PUT (update of `Type/id`;
`ifMatch` names the version it replaces) or a GET (read `Type/id` or `Type/id/_history/vid`).
A wrong shape or a method outside these is refused while decoding, naming the element, e.g.
`entry[1].request.method`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from api.fhir.resources_in import FhirObservation, FhirPatient, FhirResource
from domain.fields import Code, Uri

__all__ = ["Bundle", "Entry", "EntryRequest", "FhirObservation", "FhirPatient"]

Condition = Annotated[str, msgspec.Meta(max_length=1000)]  # a search query, as a query string


class EntryRequest(msgspec.Struct, kw_only=True):
    method: Literal["GET", "POST", "PUT"]
    url: Uri | None = None
    ifMatch: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    ifNoneExist: Condition | None = None


class Entry(msgspec.Struct, kw_only=True):
    resource: FhirResource | None = None
    request: EntryRequest
    fullUrl: Uri | None = None


class Bundle(msgspec.Struct, kw_only=True, tag_field="resourceType", tag="Bundle"):
    type: Code  # transaction or batch: anything else is refused with its own code
    entry: Annotated[list[Entry], msgspec.Meta(max_length=500)] = []
