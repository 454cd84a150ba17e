"""`POST /fhir/Patient/$match` (FHIR R4 operation): is this person already registered here?

The body is a Parameters resource with `resource` (a Patient: names, birthDate, telecom,
identifier), optionally `onlyCertainMatches` and `count`. The answer is a searchset Bundle of
the matching patients the caller may see, best first, each entry with `search.mode` match,
`search.score` and the match-grade extension (certain, probable, possible: see
domain.identifiers.matching). The same rule refuses a duplicate at registration (409)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from api.deps import Caller, Config, Conn
from api.fhir import admin
from api.fhir.bundle import fhir
from api.fhir.inbound import _birth, _names, _phone
from api.fhir.preconditions import BadRequest
from api.fhir.resources_in import FhirPatient
from domain import patient_match, patients

MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
DEFAULT_COUNT = 10
MAX_COUNT = 100


class Parameter(msgspec.Struct, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=64)]
    resource: FhirPatient | None = None
    valueBoolean: bool | None = None
    valueInteger: int | None = None


class Parameters(msgspec.Struct, kw_only=True, tag="Parameters", tag_field="resourceType"):
    parameter: Annotated[list[Parameter], msgspec.Meta(max_length=10)] = []


def _read(data: Parameters) -> tuple[FhirPatient, bool, int]:
    by_name = {p.name: p for p in data.parameter}
    unknown = sorted(set(by_name) - {"resource", "onlyCertainMatches", "count"})
    if unknown:
        raise BadRequest("unknown_parameter", f"$match takes resource, onlyCertainMatches, count (not {unknown[0]})",
                         field="parameter")  # fmt: skip
    resource = by_name["resource"].resource if "resource" in by_name else None
    if resource is None:
        raise BadRequest("resource_required", "give the Patient as the parameter named resource", field="parameter")
    only = by_name["onlyCertainMatches"].valueBoolean if "onlyCertainMatches" in by_name else None
    count = by_name["count"].valueInteger if "count" in by_name else None
    if count is not None and not 1 <= count <= MAX_COUNT:
        raise BadRequest("out_of_range", f"count is 1 to {MAX_COUNT}", field="count")
    return resource, bool(only), count or DEFAULT_COUNT


def _entry(base: str, found: patient_match.Found) -> dict[str, Any]:
    resource = admin.patient(found.patient)
    return {
        "fullUrl": f"{base}/fhir/Patient/{found.patient.id}",
        "resource": resource,
        "search": {
            "mode": "match",
            "score": found.match.score,
            "extension": [{"url": MATCH_GRADE, "valueCode": found.match.grade}],
        },
    }


class FhirMatchController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    @post("/Patient/$match", status_code=HTTP_200_OK,
          summary="Patients who may be this person (certain, probable, possible), best first")  # fmt: skip
    async def match(self, data: JSONBody[Parameters], conn: Conn, principal: Caller, settings: Config) -> Response[Any]:
        resource, only_certain, count = _read(data)
        birth_date, birth_year = _birth(resource.birthDate, "resource.birthDate")
        wanted = patient_match.Wanted(
            names=_names(resource),
            identifiers=[patients.Identifier(i.system, i.value) for i in resource.identifier],
            birth_date=birth_date, birth_year=birth_year, phone=_phone(resource),
        )  # fmt: skip
        if not wanted.identifiers and not wanted.names:
            raise BadRequest("match_criteria_required", "give at least an identifier or a name", field="resource")
        found = await patient_match.find(
            conn, principal, wanted, count=count, only_certain=only_certain, default_region=settings.default_region
        )
        base = settings.public_base_url
        result: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "link": [{"relation": "self", "url": f"{base}/fhir/Patient/$match"}],
        }
        if found:
            result["entry"] = [_entry(base, f) for f in found]
        return fhir(result)
