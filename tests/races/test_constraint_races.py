"""Every constraint a concurrent request can hit ends as a clear 4xx with a code, never a 500:
many identical or colliding requests at once, split across two server processes, and then the
database checked for what must hold."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from api.fhir.errors import code_of
from tests.factory import Factory, auth, iso, new_phone, next_local
from tests.fhir.test_transaction import transaction
from tests.fhir.test_writes import temperature
from tests.races.conftest import Live

N = 20
TEMPERATURE = {"kind": "observation", "code": "8310-5", "value": 38.5, "unit": "Cel"}


async def _at_once(n: int, request: Callable[[int], Awaitable[httpx.Response]]) -> list[httpx.Response]:
    return await asyncio.gather(*(request(i) for i in range(n)))


def _statuses(answers: list[httpx.Response], allowed: set[int]) -> Counter[int]:
    found = Counter(a.status_code for a in answers)
    assert set(found) <= allowed, [a.text for a in answers if a.status_code not in allowed][:3]
    return found


def _codes(answers: list[httpx.Response], status: int) -> set[str]:
    return {a.json()["code"] for a in answers if a.status_code == status}


async def test_onboarding_one_phone_twenty_times_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    centre = await factory.facility()
    phone, token = new_phone(), await factory.admin_token()
    body = {"name": "Dr Race", "phone": phone, "facility_id": str(centre), "role": "specialist"}
    answers = await _at_once(N, lambda i: http.post(f"{live.url(i)}/v1/practitioners", json=body, headers=auth(token)))
    assert _statuses(answers, {201, 409})[201] == 1
    assert _codes(answers, 409) == {"practitioner_exists"}
    kept = await db.fetchval(
        "SELECT count(*) FROM practitioners p JOIN users u ON u.id = p.user_id WHERE u.phone = $1", phone
    )
    assert kept == 1


async def test_one_identifier_registered_twenty_times_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    scene = await factory.scene()
    identifier = {"system": "urn:kh:nid", "value": f"race-{uuid.uuid4().hex[:12]}"}

    def register(i: int) -> Awaitable[httpx.Response]:
        body = {"names": [{"text": f"Twin {i}"}], "home_facility_id": str(scene.post), "identifiers": [identifier]}
        return http.post(f"{live.url(i)}/v1/patients", json=body, headers=scene.chw.headers)

    answers = await _at_once(N, register)
    assert _statuses(answers, {201, 409})[201] == 1
    assert _codes(answers, 409) == {"duplicate_patient"}  # the losers find the winner (domain.identifiers.matching)
    assert await db.fetchval("SELECT count(*) FROM patient_identifiers WHERE value = $1", identifier["value"]) == 1


async def test_one_idempotency_key_twenty_times_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    scene = await factory.scene()
    headers = auth(scene.chw.token, **{"Idempotency-Key": f"race-{uuid.uuid4()}"})
    answers = await _at_once(
        N, lambda i: http.post(f"{live.url(i)}/v1/appointments", json=scene.booking("10:00"), headers=headers)
    )
    _statuses(answers, {201})
    assert len({a.content for a in answers}) == 1  # the first answer, replayed to the others
    assert await db.fetchval("SELECT count(*) FROM appointments WHERE patient_id = $1", scene.patient) == 1


async def test_a_reschedule_racing_bookings_for_its_new_time(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    """One appointment moves to 10:00 while others book that practitioner at 10:00 and the
    patient with other practitioners at 10:00: one per practitioner and per patient survives."""
    scene = await factory.scene()
    others = [await factory.staff(scene.centre) for _ in range(4)]
    for other in others:
        await factory.weekly(other)
    patients = [await factory.patient(scene.post, token=scene.chw.token) for _ in range(8)]
    booked = await factory.post("/v1/appointments", scene.booking("09:00"), scene.chw.token)
    at = next_local("Asia/Phnom_Penh", "10:00")

    requests: list[tuple[str, dict[str, Any]]] = [(f"/v1/appointments/{booked['id']}/reschedule", {"start": iso(at)})]
    requests += [("/v1/appointments", {**scene.booking("10:00"), "patient_id": str(p)}) for p in patients]
    requests += [
        ("/v1/appointments", {**scene.booking("10:00"), "practitioner_id": str(o.practitioner_id)}) for o in others
    ]
    answers = await _at_once(
        len(requests),
        lambda i: http.post(f"{live.url(i)}{requests[i][0]}", json=requests[i][1], headers=scene.chw.headers),
    )
    _statuses(answers, {200, 201, 409})
    assert _codes(answers, 409) <= {"slot_taken", "patient_double_booked"}
    rows = await db.fetch(
        """SELECT patient_id, practitioner_id FROM appointments
           WHERE start_at = $1 AND status = 'booked' AND (practitioner_id = $2 OR patient_id = $3)""",
        at,
        scene.specialist.practitioner_id,
        scene.patient,
    )
    assert Counter(r["practitioner_id"] for r in rows)[scene.specialist.practitioner_id] == 1
    assert Counter(r["patient_id"] for r in rows)[scene.patient] <= 1
    assert sum(1 for a in answers if a.status_code in (200, 201)) == len(rows)


async def test_check_in_cancel_and_no_show_racing(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    scene = await factory.scene()
    booked = await factory.post("/v1/appointments", scene.booking("09:00"), scene.chw.token)
    await db.execute(  # started five minutes ago: check-in, cancel and no-show are all possible
        "UPDATE appointments SET start_at = now() - interval '5 minutes', end_at = now() + interval '25 minutes' "
        "WHERE id = $1",
        uuid.UUID(booked["id"]),
    )
    actions = ["check-in", "cancel", "no-show"] * 6
    answers = await _at_once(
        len(actions),
        lambda i: http.post(f"{live.url(i)}/v1/appointments/{booked['id']}/{actions[i]}", headers=scene.chw.headers),
    )
    won = _statuses(answers, {200, 409})[200]
    assert _codes(answers, 409) <= {"invalid_status"}
    events = await db.fetch(
        "SELECT from_status, to_status FROM appointment_events WHERE appointment_id = $1 ORDER BY id",
        uuid.UUID(booked["id"]),
    )
    assert len(events) == 1 + won  # the booking, then one event per success
    assert all(e["from_status"] == before["to_status"] for before, e in itertools.pairwise(events))
    final = await db.fetchval("SELECT status FROM appointments WHERE id = $1", uuid.UUID(booked["id"]))
    assert final == events[-1]["to_status"]


async def test_one_referral_triaged_twenty_times_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    scene = await factory.scene()
    await factory.post(
        f"/v1/facilities/{scene.post}/referral-targets", {"facility_id": str(scene.centre)}, await factory.admin_token()
    )
    referral = await factory.post(
        "/v1/referrals",
        {
            "patient_id": str(scene.patient),
            "to_facility_id": str(scene.centre),
            "specialty": "cardiology",
            "urgency": "urgent",
            "reason": "chest pain on exertion",
        },
        scene.chw.token,
    )

    def triage(i: int) -> Awaitable[httpx.Response]:
        start = iso(next_local("Asia/Phnom_Penh", f"{8 + i % 4}:00"))
        accept = {"decision": "accept", "start": start, "mode": "video"}
        decline = {"decision": "decline", "reason": "not needed"}
        return http.post(
            f"{live.url(i)}/v1/referrals/{referral['id']}/triage",
            json=accept if i % 2 else decline,
            headers=scene.specialist.headers,
        )

    answers = await _at_once(N, triage)
    assert _statuses(answers, {200, 409})[200] == 1
    assert _codes(answers, 409) <= {"invalid_status", "slot_taken", "patient_double_booked"}
    kept = await db.fetchval("SELECT count(*) FROM appointments WHERE patient_id = $1", scene.patient)
    status = await db.fetchval("SELECT status FROM referrals WHERE id = $1", uuid.UUID(referral["id"]))
    assert kept == (1 if status == "accepted" else 0)


async def test_one_sync_batch_pushed_twenty_times_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    scene = await factory.scene()
    prefix = uuid.uuid4().hex[:8]
    changes = [
        {"client_id": f"{prefix}-{k}", "patient_id": str(scene.patient), "entry": {**TEMPERATURE, "value": 37 + k}}
        for k in range(3)
    ]
    answers = await _at_once(
        N, lambda i: http.post(f"{live.url(i)}/v1/sync", json={"changes": changes}, headers=scene.chw.headers)
    )
    _statuses(answers, {200})
    results = [r["result"] for a in answers for r in a.json()["results"]]
    assert Counter(results)["applied"] == len(changes)
    assert set(results) <= {"applied", "duplicate"}
    kept = await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", scene.patient)
    assert kept == len(changes)


async def test_one_entry_corrected_twenty_times_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    scene = await factory.scene()
    entry = await factory.post(f"/v1/patients/{scene.patient}/record", TEMPERATURE, scene.chw.token)

    def correct(i: int) -> Awaitable[httpx.Response]:
        body = {"expected_version": 1, "entry": {**TEMPERATURE, "value": 36 + i / 10}, "reason": "re-measured"}
        return http.post(f"{live.url(i)}/v1/record/{entry['id']}/correct", json=body, headers=scene.chw.headers)

    answers = await _at_once(N, correct)
    assert _statuses(answers, {200, 409})[200] == 1
    assert _codes(answers, 409) == {"version_conflict"}
    versions = await db.fetchval("SELECT count(*) FROM record_entries WHERE id = $1", uuid.UUID(entry["id"]))
    assert versions == 2


async def test_weekly_availability_replaced_twenty_times_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    """Each replace names a different morning; afterwards exactly one of them is the schedule
    (never two sets of rules overlapping on a weekday)."""
    scene = await factory.scene()

    def replace(i: int) -> Awaitable[httpx.Response]:
        rules = [{"weekday": d, "start": f"{6 + i % 10:02d}:00", "end": f"{7 + i % 10:02d}:00"} for d in range(1, 8)]
        body = {"facility_id": str(scene.centre), "rules": rules}
        return http.put(
            f"{live.url(i)}/v1/practitioners/{scene.specialist.practitioner_id}/availability",
            json=body,
            headers=scene.specialist.headers,
        )

    answers = await _at_once(N, replace)
    _statuses(answers, {200})
    starts = await db.fetch(
        "SELECT weekday, start_local FROM availability_rules WHERE practitioner_id = $1",
        scene.specialist.practitioner_id,
    )
    assert len(starts) == 7
    assert len({r["start_local"] for r in starts}) == 1


async def test_one_consent_revoked_twenty_times_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    scene = await factory.scene()
    patient = await factory.patient_login(scene.post)
    consent = await factory.post(f"/v1/patients/{patient.patient_id}/consents", {"scope": "network"}, patient.token)
    answers = await _at_once(
        N,
        lambda i: http.post(
            f"{live.url(i)}/v1/consents/{consent['id']}/revoke",
            json={"reason": "changed my mind"},
            headers=patient.headers,
        ),
    )
    assert _statuses(answers, {200, 409})[200] == 1
    assert _codes(answers, 409) == {"already_revoked"}


async def test_one_health_id_in_twenty_fhir_transactions_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    """Under /fhir the loser's answer is an OperationOutcome carrying the same code."""
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    health_id = uuid.uuid4().hex[:10]
    answers = await _at_once(
        N,
        lambda i: http.post(f"{live.url(i)}/fhir", json=transaction(post, health_id, 37 + i / 10), headers=chw.headers),
    )
    assert _statuses(answers, {200, 409})[200] == 1
    lost = [a for a in answers if a.status_code == 409]
    assert {a.headers["content-type"].split(";")[0] for a in lost} == {"application/fhir+json"}
    assert {code_of(a.json()) for a in lost} == {"duplicate_patient"}
    assert await db.fetchval("SELECT count(*) FROM patient_identifiers WHERE value = $1", health_id) == 1


async def test_one_patient_version_edited_twenty_times_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    """Edits made against the same version (If-Match): one wins, the others learn it moved on."""
    scene = await factory.scene()
    version = await db.fetchval("SELECT version FROM patients WHERE id = $1", scene.patient)
    answers = await _at_once(
        N,
        lambda i: http.patch(
            f"{live.url(i)}/v1/patients/{scene.patient}",
            json={"names": [{"text": f"Edit {i}"}]},
            headers=auth(scene.chw.token, **{"If-Match": f'"{version}"'}),
        ),
    )
    assert _statuses(answers, {200, 409})[200] == 1
    assert _codes(answers, 409) == {"version_mismatch"}
    assert await db.fetchval("SELECT version FROM patients WHERE id = $1", scene.patient) == version + 1


async def test_twenty_patients_registered_with_one_family_phone_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    """A phone is not unique to a patient (a family shares one): all are registered, and all are
    linked to the login of that phone."""
    scene = await factory.scene()
    family = await factory.patient_login(scene.post)

    def register(i: int) -> Awaitable[httpx.Response]:
        body = {"names": [{"text": f"Child {i}"}], "home_facility_id": str(scene.post), "phone": family.phone}
        return http.post(f"{live.url(i)}/v1/patients", json=body, headers=scene.chw.headers)

    _statuses(await _at_once(N, register), {201})
    linked = await db.fetchval("SELECT count(*) FROM patient_accounts WHERE user_id = $1", family.user_id)
    assert linked == N + 1


async def test_one_closure_withdrawn_twenty_times_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    scene = await factory.scene()
    admin = await factory.admin_token()
    start = next_local("Asia/Phnom_Penh", "08:00", days_ahead=9)
    closure = await factory.post(
        f"/v1/facilities/{scene.centre}/closures",
        {"starts_at": iso(start), "ends_at": iso(start + timedelta(hours=4))},
        admin,
    )
    answers = await _at_once(
        N,
        lambda i: http.delete(
            f"{live.url(i)}/v1/facilities/{scene.centre}/closures/{closure['id']}", headers=auth(admin)
        ),
    )
    _statuses(answers, {204, 404})
    assert (
        await db.fetchval("SELECT count(*) FROM availability_exceptions WHERE id = $1", uuid.UUID(closure["id"])) == 0
    )


async def test_one_fhir_conditional_create_twenty_times_at_once(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    """Twenty clients post the same temperature under the same If-None-Exist at once, across both
    processes: one creates it (201), the others find that one (200); the record holds one."""
    scene = await factory.scene()
    patient = await factory.patient(scene.post, token=scene.chw.token, phone=new_phone())
    condition = f"patient={patient}&code=http://loinc.org|8310-5&date=2026-11-02T03:10:00Z"
    headers = {**scene.chw.headers, "If-None-Exist": condition}
    body = temperature(patient)
    answers = await _at_once(N, lambda i: http.post(f"{live.url(i)}/fhir/Observation", json=body, headers=headers))
    assert _statuses(answers, {200, 201})[201] == 1
    assert len({a.json()["id"] for a in answers}) == 1
    assert await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", patient) == 1
