"""Every instant an answer carries is UTC written with `Z`, whatever offset the client used: in a
201, in its Idempotency-Key replay, in MessagePack, and under /fhir. Local wall-clock times appear
only in fields named *_local."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from api.input_rules import utc_instants
from api.negotiation import NegotiatedResponse, NonUtcInstant, UtcCheckedResponse
from tests.factory import Factory, auth, iso, next_local

Client = AsyncTestClient[Litestar]
PHNOM_PENH = "+07:00"
_INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?P<zone>Z|[+-]\d\d:\d\d)?$")


def instants_of(value: Any, key: str = "") -> list[tuple[str, str]]:
    """(key, text) of every instant-looking string in a decoded answer, local fields aside."""
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in instants_of(v, k)]
    if isinstance(value, list):
        return [found for v in value for found in instants_of(v, key)]
    if isinstance(value, str) and _INSTANT.match(value) and not key.endswith("_local"):
        return [(key, value)]
    return []


def assert_utc(value: Any, *, at_least: int = 1) -> None:
    found = instants_of(value)
    assert len(found) >= at_least, found
    assert all(text.endswith("Z") for _, text in found), [f for f in found if not f[1].endswith("Z")]


def in_phnom_penh(instant: datetime) -> str:
    return instant.astimezone(timezone(timedelta(hours=7))).isoformat()


async def test_a_booking_made_in_local_time_answers_in_utc_also_when_replayed_and_packed(
    client: Client, factory: Factory
) -> None:
    scene = await factory.scene()
    at = next_local("Asia/Phnom_Penh", "10:00")
    body = {**scene.booking(), "start": in_phnom_penh(at)}
    headers = auth(scene.chw.token, **{"Idempotency-Key": f"utc-{uuid.uuid4()}"})
    created = await client.post("/v1/appointments", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["start"] == iso(at)
    assert created.json()["end"] == iso(at + timedelta(minutes=30))
    assert created.json()["start_local"].endswith(PHNOM_PENH)  # the wall clock, named as such
    assert_utc(created.json(), at_least=4)

    replayed = await client.post("/v1/appointments", json=body, headers=headers)
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.content == created.content

    packed_body = {**body, "start": in_phnom_penh(at + timedelta(minutes=30))}
    packed_headers = auth(scene.chw.token, Accept="application/msgpack", **{"Idempotency-Key": f"utc-{uuid.uuid4()}"})
    packed = await client.post("/v1/appointments", json=packed_body, headers=packed_headers)
    assert packed.status_code == 201, packed.text
    assert msgspec.msgpack.decode(packed.content)["start"] == iso(at + timedelta(minutes=30))
    assert_utc(msgspec.msgpack.decode(packed.content), at_least=4)
    packed_again = await client.post("/v1/appointments", json=packed_body, headers=packed_headers)
    assert packed_again.content == packed.content
    listed = await client.get(
        "/v1/appointments", params={"patient_id": str(scene.patient)}, headers=auth(scene.chw.token)
    )
    as_msgpack = await client.get(
        "/v1/appointments",
        params={"patient_id": str(scene.patient)},
        headers=auth(scene.chw.token, Accept="application/msgpack"),
    )
    assert as_msgpack.headers["content-type"].startswith("application/msgpack")
    decoded = msgspec.msgpack.decode(as_msgpack.content)
    assert_utc(decoded, at_least=4)
    assert decoded == listed.json()  # the same values in both encodings


async def test_rescheduling_and_time_off_in_local_time_answer_in_utc(client: Client, factory: Factory) -> None:
    scene = await factory.scene()
    booked = await factory.post("/v1/appointments", scene.booking("09:00"), scene.chw.token)
    later = next_local("Asia/Phnom_Penh", "11:00")
    moved = await client.post(
        f"/v1/appointments/{booked['id']}/reschedule",
        json={"start": in_phnom_penh(later)},
        headers=auth(scene.chw.token),
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["start"] == iso(later)
    assert_utc(moved.json(), at_least=4)

    history = await client.get(f"/v1/appointments/{booked['id']}/history", headers=auth(scene.chw.token))
    assert_utc(history.json(), at_least=6)

    leave_start = next_local("Asia/Phnom_Penh", "08:00", days_ahead=5)
    leave = await client.post(
        f"/v1/practitioners/{scene.specialist.practitioner_id}/exceptions",
        json={"starts_at": in_phnom_penh(leave_start), "ends_at": in_phnom_penh(leave_start + timedelta(hours=4))},
        headers=scene.specialist.headers,
    )
    assert leave.status_code == 201, leave.text
    assert leave.json()["starts_at"] == iso(leave_start)
    assert_utc(leave.json(), at_least=2)
    closure = await client.post(
        f"/v1/facilities/{scene.centre}/closures",
        json={"starts_at": in_phnom_penh(leave_start), "ends_at": in_phnom_penh(leave_start + timedelta(days=1))},
        headers=auth(await factory.admin_token()),
    )
    assert closure.status_code == 201, closure.text
    assert_utc(closure.json(), at_least=2)


async def test_fhir_instants_are_utc(client: Client, factory: Factory) -> None:
    scene = await factory.scene()
    at = next_local("Asia/Phnom_Penh", "09:30")
    booked = await factory.post("/v1/appointments", {**scene.booking(), "start": in_phnom_penh(at)}, scene.chw.token)
    appointment = await client.get(f"/fhir/Appointment/{booked['id']}", headers=auth(scene.chw.token))
    assert appointment.status_code == 200, appointment.text
    assert appointment.json()["start"] == iso(at)
    assert_utc(appointment.json(), at_least=2)
    day = at.date().isoformat()
    slots = await client.get(
        "/fhir/Slot",
        params={"schedule": f"Schedule/{scene.specialist.practitioner_id}", "start": f"ge{day}"},
        headers=auth(scene.chw.token),
    )
    assert slots.status_code == 200, slots.text
    assert_utc(slots.json(), at_least=2)


async def test_instants_inside_record_entries_are_utc(client: Client, factory: Factory) -> None:
    """started_at, ended_at, onset and effective_at are kept in the entry's body: UTC there too,
    in the app API and in the FHIR resources made from it."""
    scene = await factory.scene()
    began = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    entries: list[dict[str, Any]] = [
        {
            "kind": "encounter",
            "started_at": in_phnom_penh(began),
            "ended_at": in_phnom_penh(began + timedelta(hours=1)),
        },
        {"kind": "condition", "code": "I10", "onset": in_phnom_penh(began)},
        {"kind": "observation", "code": "8310-5", "value": 37.5, "unit": "Cel", "effective_at": in_phnom_penh(began)},
    ]
    for entry in entries:
        written = await factory.post(f"/v1/patients/{scene.patient}/record", entry, scene.chw.token)
        assert_utc(written["body"])
        assert_utc(written, at_least=3)
        kind = {"encounter": "Encounter", "condition": "Condition", "observation": "Observation"}[entry["kind"]]
        resource = await client.get(f"/fhir/{kind}/{written['id']}", headers=scene.chw.headers)
        assert resource.status_code == 200, resource.text
        assert_utc(resource.json())
        assert iso(began) in resource.text


class TestTheRuleIsCheckedNotRewritten:
    """Answers are encoded once (api.negotiation); instants are UTC because every door moves them
    there (api.input_rules.utc_instants), and under test any answer breaking the rule fails."""

    def test_decoded_bodies_carry_utc_only(self) -> None:
        class Leave(msgspec.Struct, frozen=True):
            starts_at: datetime
            nested: list[dict[str, datetime]]

        local = datetime(2026, 12, 1, 16, 0, tzinfo=timezone(timedelta(hours=7)))
        decoded = utc_instants(Leave(local, [{"at": local}]))
        assert decoded.starts_at == local
        assert decoded.starts_at.utcoffset() == timedelta(0)
        assert decoded.nested[0]["at"].tzinfo is UTC
        assert utc_instants(local).tzinfo is UTC
        assert utc_instants([local])[0].tzinfo is UTC

    async def test_an_answer_with_a_local_instant_fails_under_test(self) -> None:
        local = datetime(2026, 12, 1, 16, 0, tzinfo=timezone(timedelta(hours=7)))

        @get("/leak", sync_to_thread=False)
        def leak() -> dict[str, datetime]:
            return {"at": local}

        @get("/fine", sync_to_thread=False)
        def fine() -> dict[str, datetime]:
            return {"at": local.astimezone(UTC), "start_local": local}

        checked = Litestar([leak, fine], response_class=UtcCheckedResponse)
        with pytest.raises(NonUtcInstant):
            UtcCheckedResponse({"at": local}).render({"at": local}, "application/json")
        with pytest.raises(NonUtcInstant):
            UtcCheckedResponse({"at": local}).render({"at": local}, "application/msgpack")
        async with AsyncTestClient(checked) as client:
            assert (await client.get("/leak")).status_code == 500
            expected = {"at": "2026-12-01T09:00:00Z", "start_local": local.isoformat()}
            assert (await client.get("/fine")).json() == expected
            packed = await client.get("/fine", headers={"Accept": "application/msgpack"})
            assert msgspec.msgpack.decode(packed.content) == expected

    def test_production_encodes_once_without_scanning(self) -> None:
        utc_at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        assert NegotiatedResponse(None).render({"at": utc_at}, "application/json") == b'{"at":"2026-12-01T09:00:00Z"}'
