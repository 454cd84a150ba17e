"""Leave and facility closures remove slots and refuse bookings inside them."""

from __future__ import annotations

from datetime import timedelta

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, auth, iso, local_date, next_local

Client = AsyncTestClient[Litestar]


async def test_leave_and_closures_block_slots_and_bookings(client: Client, factory: Factory) -> None:
    scene = await factory.scene()
    centre, specialist, chw, patient = scene.centre, scene.specialist, scene.chw, scene.patient
    nine = next_local("Asia/Phnom_Penh", "09:00")
    leave = await client.post(
        f"/v1/practitioners/{specialist.practitioner_id}/exceptions",
        json={"starts_at": iso(nine), "ends_at": iso(nine + timedelta(hours=1)), "reason": "training"},
        headers=specialist.headers,
    )
    assert leave.status_code == 201, leave.text
    day = local_date(nine, "Asia/Phnom_Penh").isoformat()
    params = {"from": day, "to": day, "practitioner_id": str(specialist.practitioner_id)}
    starts = {s["start"] for s in (await client.get("/v1/slots", params=params, headers=chw.headers)).json()["items"]}
    assert iso(nine) not in starts
    assert iso(nine + timedelta(minutes=30)) not in starts
    assert iso(nine + timedelta(hours=1)) in starts
    body = {"patient_id": str(patient), "practitioner_id": str(specialist.practitioner_id), "start": iso(nine)}
    refused = await client.post("/v1/appointments", json=body, headers=chw.headers)
    assert refused.status_code == 422
    assert refused.json()["code"] == "slot_unavailable"

    # A public holiday closes the whole facility for the next day.
    admin = await factory.facility_admin(centre)
    next_day = nine + timedelta(days=1)
    closure = await client.post(
        f"/v1/facilities/{centre}/closures",
        json={
            "starts_at": iso(next_day - timedelta(hours=9)),
            "ends_at": iso(next_day + timedelta(hours=15)),
            "reason": "Water Festival",
        },
        headers=auth(admin),
    )
    assert closure.status_code == 201, closure.text
    holiday = local_date(next_day, "Asia/Phnom_Penh").isoformat()
    closed = await client.get("/v1/slots", params={**params, "from": holiday, "to": holiday}, headers=chw.headers)
    assert closed.json()["items"] == []
    by_specialist = await client.post(
        f"/v1/facilities/{centre}/closures",
        json={"starts_at": iso(next_day), "ends_at": iso(next_day + timedelta(hours=1))},
        headers=specialist.headers,
    )
    assert by_specialist.status_code == 403


async def test_time_off_can_be_withdrawn_by_whoever_may_enter_it(client: Client, factory: Factory) -> None:
    scene = await factory.scene()
    specialist, chw = scene.specialist, scene.chw
    nine = next_local("Asia/Phnom_Penh", "09:00")
    url = f"/v1/practitioners/{specialist.practitioner_id}/exceptions"
    leave = (
        await client.post(
            url, json={"starts_at": iso(nine), "ends_at": iso(nine + timedelta(hours=1))}, headers=specialist.headers
        )
    ).json()
    assert (await client.delete(f"{url}/{leave['id']}", headers=chw.headers)).status_code == 403
    assert (await client.delete(f"{url}/{leave['id']}", headers=specialist.headers)).status_code == 204
    assert (await client.get(url, headers=specialist.headers)).json() == []
    gone = await client.delete(f"{url}/{leave['id']}", headers=specialist.headers)
    assert gone.status_code == 404
    assert gone.json()["code"] == "exception_not_found"
    naive = await client.post(
        url, json={"starts_at": "2030-01-01T00:00:00", "ends_at": "2030-01-02T00:00:00"}, headers=specialist.headers
    )
    assert naive.json()["code"] == "timezone_required"
