"""Every class of bad input gets a 4xx problem+json with a stable code, naming the field."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, auth, iso, next_local

Client = AsyncTestClient[Litestar]


@pytest.fixture
async def chw_and_specialist(factory: Factory) -> tuple[dict[str, str], str, str]:
    scene = await factory.scene()
    return scene.chw.headers, str(scene.patient), str(scene.specialist.practitioner_id)


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    return body


class TestBookingInput:
    async def test_missing_field(self, client: Client, chw_and_specialist: tuple[dict[str, str], str, str]) -> None:
        headers, patient, _ = chw_and_specialist
        body = _problem(
            await client.post("/v1/appointments", json={"patient_id": patient}, headers=headers), 400, "missing_field"
        )
        assert body["errors"][0]["field"] == "practitioner_id"

    async def test_malformed_values(self, client: Client, chw_and_specialist: tuple[dict[str, str], str, str]) -> None:
        headers, patient, practitioner = chw_and_specialist
        cases = [
            (
                {"patient_id": "not-a-uuid", "practitioner_id": practitioner, "start": "2030-01-01T00:00:00Z"},
                "patient_id",
            ),
            ({"patient_id": patient, "practitioner_id": practitioner, "start": "tomorrow"}, "start"),
            (
                {
                    "patient_id": patient,
                    "practitioner_id": practitioner,
                    "start": "2030-01-01T00:00:00Z",
                    "mode": "fax",
                },
                "mode",
            ),
            ({"patient_id": patient, "practitioner_id": practitioner, "start": ["x"]}, "start"),
        ]
        for payload, field in cases:
            body = _problem(await client.post("/v1/appointments", json=payload, headers=headers), 400, "invalid_input")
            assert body["errors"][0]["field"] == field, body

    async def test_oversized_text_and_body(
        self, client: Client, chw_and_specialist: tuple[dict[str, str], str, str]
    ) -> None:
        headers, patient, practitioner = chw_and_specialist
        base = {"patient_id": patient, "practitioner_id": practitioner, "start": "2030-01-01T02:00:00Z"}
        long_reason = await client.post("/v1/appointments", json={**base, "reason": "x" * 2001}, headers=headers)
        body = _problem(long_reason, 400, "invalid_input")
        assert body["errors"][0]["field"] == "reason"
        huge = await client.post(
            "/v1/appointments",
            content=b"{" + b" " * 2_000_000 + b"}",
            headers={**headers, "content-type": "application/json"},
        )
        _problem(huge, 413, "payload_too_large")

    async def test_not_json(self, client: Client, chw_and_specialist: tuple[dict[str, str], str, str]) -> None:
        headers, _, _ = chw_and_specialist
        response = await client.post(
            "/v1/appointments", content=b"{not json", headers={**headers, "content-type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["code"] in ("invalid_input", "malformed_body")

    async def test_rules_of_the_domain(
        self, client: Client, chw_and_specialist: tuple[dict[str, str], str, str]
    ) -> None:
        headers, patient, practitioner = chw_and_specialist
        base = {"patient_id": patient, "practitioner_id": practitioner}
        past = _problem(
            await client.post("/v1/appointments", json={**base, "start": "2020-01-01T02:00:00Z"}, headers=headers),
            422,
            "start_in_past",
        )
        assert past["errors"][0]["field"] == "start"
        off_grid = iso(next_local("Asia/Phnom_Penh", "09:10"))
        _problem(
            await client.post("/v1/appointments", json={**base, "start": off_grid}, headers=headers),
            422,
            "slot_unavailable",
        )
        night = iso(next_local("Asia/Phnom_Penh", "22:00"))
        _problem(
            await client.post("/v1/appointments", json={**base, "start": night}, headers=headers),
            422,
            "slot_unavailable",
        )
        naive = "2030-01-01T09:00:00"
        _problem(
            await client.post("/v1/appointments", json={**base, "start": naive}, headers=headers),
            422,
            "timezone_required",
        )

    async def test_unknown_ids(self, client: Client, chw_and_specialist: tuple[dict[str, str], str, str]) -> None:
        headers, patient, practitioner = chw_and_specialist
        start = iso(next_local("Asia/Phnom_Penh", "09:00"))
        _problem(
            await client.post(
                "/v1/appointments",
                json={"patient_id": str(uuid.uuid4()), "practitioner_id": practitioner, "start": start},
                headers=headers,
            ),
            404,
            "patient_not_found",
        )
        _problem(
            await client.post(
                "/v1/appointments",
                json={"patient_id": patient, "practitioner_id": str(uuid.uuid4()), "start": start},
                headers=headers,
            ),
            404,
            "practitioner_not_found",
        )
        _problem(await client.get(f"/v1/appointments/{uuid.uuid4()}", headers=headers), 404, "appointment_not_found")
        _problem(await client.get(f"/v1/patients/{uuid.uuid4()}", headers=headers), 404, "patient_not_found")
        _problem(await client.get("/v1/appointments/not-a-uuid", headers=headers), 404, "route_not_found")

    async def test_out_of_range_queries(
        self, client: Client, chw_and_specialist: tuple[dict[str, str], str, str]
    ) -> None:
        headers, _, _ = chw_and_specialist
        _problem(await client.get("/v1/appointments", params={"limit": 0}, headers=headers), 400, "invalid_input")
        _problem(await client.get("/v1/appointments", params={"limit": 10_000}, headers=headers), 400, "invalid_input")
        _problem(
            await client.get("/v1/slots", params={"from": "2030-01-01", "to": "2030-12-31"}, headers=headers),
            422,
            "date_range_too_long",
        )
        _problem(
            await client.get("/v1/slots", params={"from": "2030-01-05", "to": "2030-01-01"}, headers=headers),
            422,
            "invalid_date_range",
        )
        body = _problem(
            await client.get("/v1/slots", params={"to": "2030-01-01"}, headers=headers), 400, "missing_field"
        )
        assert body["errors"][0]["field"] == "from"
        _problem(await client.get("/v1/appointments", params={"cursor": "!!"}, headers=headers), 422, "invalid_cursor")

    async def test_routing_errors(self, client: Client, factory: Factory) -> None:
        token = await factory.admin_token()
        _problem(await client.get("/v1/nothing-here", headers=auth(token)), 404, "route_not_found")
        _problem(await client.delete("/v1/facilities", headers=auth(token)), 405, "method_not_allowed")


class TestAvailabilityInput:
    async def test_rules_are_validated(self, client: Client, factory: Factory) -> None:
        centre = await factory.facility()
        specialist = await factory.staff(centre)
        url = f"/v1/practitioners/{specialist.practitioner_id}/availability"

        async def put(rules: list[dict[str, object]]) -> dict[str, object]:
            response = await client.put(
                url, json={"facility_id": str(centre), "rules": rules}, headers=specialist.headers
            )
            assert response.status_code in (400, 422), response.text
            body: dict[str, object] = response.json()
            return body

        assert (await put([{"weekday": 8, "start": "08:00", "end": "12:00"}]))["code"] == "invalid_weekday"
        assert (await put([{"weekday": 1, "start": "12:00", "end": "08:00"}]))["code"] == "invalid_time_range"
        assert (await put([{"weekday": 1, "start": "8h", "end": "12:00"}]))["code"] == "invalid_time"
        assert (await put([{"weekday": 1, "start": "08:00", "end": "12:00", "slot_minutes": 1}]))["code"] == (
            "invalid_slot_length"
        )
        overlap = [{"weekday": 1, "start": "08:00", "end": "12:00"}, {"weekday": 1, "start": "11:00", "end": "13:00"}]
        assert (await put(overlap))["code"] == "overlapping_rules"

    async def test_facility_input(self, client: Client, factory: Factory) -> None:
        token = await factory.admin_token()
        base = {"name": "X", "kind": "health_post", "timezone": "Asia/Phnom_Penh", "country": "KH"}
        bad_tz = await client.post("/v1/facilities", json={**base, "timezone": "Mars/Olympus"}, headers=auth(token))
        assert bad_tz.status_code == 422
        assert bad_tz.json()["code"] == "invalid_timezone"
        bad_kind = await client.post("/v1/facilities", json={**base, "kind": "spa"}, headers=auth(token))
        assert bad_kind.status_code == 400
        assert bad_kind.json()["errors"][0]["field"] == "kind"
        bad_lat = await client.post("/v1/facilities", json={**base, "latitude": 123.0}, headers=auth(token))
        assert bad_lat.status_code == 422
        assert bad_lat.json()["code"] == "out_of_range"
