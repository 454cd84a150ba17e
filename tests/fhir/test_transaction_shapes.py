"""Wrong shapes and codes outside a value set inside a transaction Bundle: a 4xx OperationOutcome
naming the element (its FHIRPath from the Bundle), never a 500, and nothing written."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory

Client = AsyncTestClient[Litestar]


def _bundle(facility: uuid.UUID, health_id: str) -> dict[str, Any]:
    loinc = "http://loinc.org"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:p", "request": {"method": "POST", "url": "Patient"}, "resource": {
                "resourceType": "Patient", "name": [{"family": "Sok", "given": ["Dara"]}], "gender": "male",
                "birthDate": "1990-02-28", "identifier": [{"system": "urn:kh:health-id", "value": health_id}],
                "telecom": [{"system": "phone", "value": "+85512999001"}],
                "managingOrganization": {"reference": f"Organization/{facility}"},
            }},
            {"request": {"method": "POST", "url": "Observation"}, "resource": {
                "resourceType": "Observation", "subject": {"reference": "urn:uuid:p"},
                "code": {"coding": [{"system": loinc, "code": "8310-5"}]},
                "valueQuantity": {"value": 37.0, "code": "Cel"}, "effectiveDateTime": "2026-11-01T02:00:00Z",
            }},
        ],
    }  # fmt: skip


# (where, the value put there, the element the answer names)
CASES: list[tuple[tuple[Any, ...], Any, str]] = [
    (("entry",), {}, "entry"),
    (("entry", 0), [], "entry[0]"),
    (("entry", 0, "resource"), "Patient", "entry[0].resource"),
    (("entry", 0, "resource", "resourceType"), "Basic", "entry[0].resource.resourceType"),
    (("entry", 0, "resource", "name"), "Sok Dara", "entry[0].resource.name"),
    (("entry", 0, "resource", "name", 0, "given"), "Dara", "entry[0].resource.name[0].given"),
    (("entry", 0, "resource", "gender"), "robot", "entry[0].resource.gender"),
    (("entry", 0, "resource", "telecom", 0, "value"), 5, "entry[0].resource.telecom[0].value"),
    (("entry", 0, "resource", "identifier", 0), "urn:kh:health-id|1", "entry[0].resource.identifier[0]"),
    (("entry", 0, "resource", "birthDate"), "2026-02-30", "entry[0].resource.birthDate"),
    (("entry", 0, "resource", "birthDate"), "0000-00-00", "entry[0].resource.birthDate"),
    (("entry", 0, "resource", "birthDate"), 1990, "entry[0].resource.birthDate"),
    (("entry", 0, "resource", "birthDate"), "0001-01-01", "entry[0].resource.birthDate"),
    (("entry", 0, "resource", "birthDate"), "9999", "entry[0].resource.birthDate"),
    (("entry", 0, "resource", "managingOrganization"), "Organization/x", "entry[0].resource.managingOrganization"),
    (
        ("entry", 0, "resource", "managingOrganization", "reference"),
        "Organization/x",
        "entry[0].resource.managingOrganization",
    ),
    (("entry", 0, "request", "method"), "DELETE", "entry[0].request.method"),
    (("entry", 1, "request", "method"), "PUT", "entry[1].request.url"),  # an update names Observation/{id}
    (("entry", 0, "request", "url"), "Observation", "entry[0].request.url"),
    (("entry", 0, "request"), None, "entry[0].request"),
    (("entry", 1, "resource", "code"), "8310-5", "entry[1].resource.code"),
    (("entry", 1, "resource", "code", "coding"), {"code": "8310-5"}, "entry[1].resource.code.coding"),
    (("entry", 1, "resource", "valueQuantity", "value"), "high", "entry[1].resource.valueQuantity.value"),
    (("entry", 1, "resource", "component"), {}, "entry[1].resource.component"),
    (("entry", 1, "resource", "effectiveDateTime"), 0, "entry[1].resource.effectiveDateTime"),
    (("entry", 1, "resource", "effectiveDateTime"), "9999-12-31T23:59:59Z", "entry[1].resource.effectiveDateTime"),
    (("entry", 1, "resource", "subject"), {"reference": "Patient/not-an-id"}, "entry[1].resource.subject"),
    (("entry", 1, "resource", "subject", "reference"), "a\u0000b", "entry[1].resource.subject.reference"),
    # codes outside a value set, and refusals by the domain, named by the FHIR element
    (("entry", 1, "resource", "status"), "bogus", "entry[1].resource.status"),
    (("entry", 1, "resource", "valueQuantity", "value"), 10**30, "entry[1].resource.valueQuantity.value"),
    (("entry", 1, "resource", "valueQuantity", "code"), "kg", "entry[1].resource.valueQuantity.code"),
    (("entry", 0, "resource", "telecom", 0, "value"), "12", "entry[0].resource.telecom"),
    (
        ("entry", 1, "resource", "subject", "reference"),
        "Patient/00000000-0000-0000-0000-000000000000",
        "entry[1].resource.subject",
    ),
    # a fullUrl names one entry: a reference to none, or a fullUrl given twice, is refused
    (("entry", 1, "resource", "subject", "reference"), "urn:uuid:nobody", "entry[1].resource.subject"),
    (("entry", 1, "fullUrl"), "urn:uuid:p", "entry[1].fullUrl"),
]


def _put(document: dict[str, Any], where: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    node: Any = changed
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    return changed


async def test_each_wrong_shape_is_a_4xx_outcome_naming_the_element(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    health_id = uuid.uuid4().hex[:10]
    good = _bundle(post, health_id)
    failures = []
    for where, value, element in CASES:
        response = await client.post("/fhir", json=_put(good, where, value), headers=chw.headers)
        body = response.json()
        expression = body.get("issue", [{}])[0].get("expression", [None])[0]
        if not (400 <= response.status_code < 500 and body.get("resourceType") == "OperationOutcome"):
            failures.append(f"{element} = {value!r}: {response.status_code} {response.text[:200]}")
        elif expression != element:
            failures.append(f"{element} = {value!r}: names {expression!r}")
    assert failures == [], failures
    assert await db.fetchval("SELECT count(*) FROM patient_identifiers WHERE value = $1", health_id) == 0
    accepted = await client.post("/fhir", json=good, headers=chw.headers)  # the unchanged Bundle is fine
    assert accepted.status_code == 200, accepted.text
