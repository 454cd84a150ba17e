"""Real answers, validated against the served schema: what is documented is what is sent.

schemathesis checks the same on generated requests (test_fuzz.py); this test makes sure the main
successful answers of each role and the framework's errors are among those checked every run.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import schemathesis
from litestar import Litestar
from litestar.testing import AsyncTestClient
from schemathesis.core.failures import Failure, FailureGroup

from tests.factory import Factory, auth, next_local

Client = AsyncTestClient[Litestar]


async def test_real_answers_match_the_schema(client: Client, factory: Factory) -> None:
    schema = schemathesis.openapi.from_dict((await client.get("/schema/openapi.json")).json())
    scene = await factory.scene()
    patient = await factory.patient_login(scene.post)
    admin = auth(await factory.admin_token())
    specialist, chw = scene.specialist.headers, scene.chw.headers
    practitioner = scene.specialist.practitioner_id
    booked = await client.post(
        "/v1/appointments", json=scene.booking("10:00"), headers={**chw, "Idempotency-Key": uuid.uuid4().hex}
    )
    appointment = booked.json()["id"]
    checked: list[tuple[str, str, httpx.Response]] = [
        ("POST", "/v1/appointments", booked),
        ("GET", "/v1/me", await client.get("/v1/me", headers=specialist)),
        ("GET", "/v1/me", await client.get("/v1/me", headers=patient.headers)),
        (
            "GET",
            "/v1/practitioners/{practitioner_id}",
            await client.get(f"/v1/practitioners/{practitioner}", headers=chw),
        ),
        ("GET", "/v1/practitioners", await client.get("/v1/practitioners", headers=chw)),
        (
            "GET",
            "/v1/practitioners/{practitioner_id}/availability",
            await client.get(f"/v1/practitioners/{practitioner}/availability", headers=specialist),
        ),
        (
            "GET",
            "/v1/slots",
            await client.get(
                "/v1/slots",
                params={"from": str(next_local("Asia/Phnom_Penh", "08:00").date()), "specialty": "cardiology"},
                headers=chw,
            ),
        ),
        ("GET", "/v1/appointments/{appointment_id}", await client.get(f"/v1/appointments/{appointment}", headers=chw)),
        ("GET", "/v1/appointments", await client.get("/v1/appointments", headers=patient.headers)),
        ("GET", "/v1/patients/{patient_id}", await client.get(f"/v1/patients/{scene.patient}", headers=chw)),
        ("GET", "/v1/facilities/{facility_id}", await client.get(f"/v1/facilities/{scene.centre}", headers=admin)),
        ("GET", "/fhir/Patient/{patient_id}", await client.get(f"/fhir/Patient/{scene.patient}", headers=chw)),
        ("GET", "/fhir/metadata", await client.get("/fhir/metadata")),
        ("GET", "/health", await client.get("/health")),
        ("GET", "/ready", await client.get("/ready")),
        ("GET", "/metrics", await client.get("/metrics")),
        # errors, the framework's own included
        ("GET", "/v1/me", await client.get("/v1/me")),
        ("GET", "/v1/appointments", await client.get("/v1/appointments", params={"limit": 0}, headers=chw)),
        ("GET", "/v1/patients/{patient_id}", await client.get(f"/v1/patients/{uuid.uuid4()}", headers=chw)),
        ("GET", "/fhir/Patient/{patient_id}", await client.get(f"/fhir/Patient/{uuid.uuid4()}", headers=chw)),
        ("GET", "/fhir/Patient/{patient_id}", await client.get(f"/fhir/Patient/{scene.patient}")),
        ("POST", "/v1/facilities", await client.post("/v1/facilities", content=b"{", headers=admin)),
    ]
    failures: list[Any] = []
    for method, path, response in checked:
        assert response.status_code < 500, (method, path, response.text)
        try:
            schema[path][method].validate_response(response)
        except (Failure, FailureGroup) as exc:  # names each violation
            failures.append((method, path, response.status_code, exc))
    assert not failures, failures


async def test_the_validation_can_fail(client: Client, factory: Factory) -> None:
    """The check above is not vacuous: an answer validated against another operation fails."""
    schema = schemathesis.openapi.from_dict((await client.get("/schema/openapi.json")).json())
    me = await client.get("/v1/me", headers=auth(await factory.admin_token()))
    with pytest.raises((Failure, FailureGroup)):
        schema["/v1/facilities/{facility_id}"]["GET"].validate_response(me)
