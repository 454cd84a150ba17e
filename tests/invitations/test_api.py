"""Inviting, listing and revoking guests, and opening their links, over the app API; the SMS goes
through the real Twilio SDK to the local stand-in and the link is read from its body."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Consultation, Factory, auth, move
from tests.invitations.conftest import eventually, invite, new_guest_phone, sms_link
from tests.twilio_server import TwilioServer

Client = AsyncTestClient[Litestar]


def _key() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


async def _open(client: Client, token: str, device: str) -> tuple[int, Any]:
    answer = await client.post("/v1/invitations/open", json={"token": token, "device": device})
    return answer.status_code, answer.json()


async def test_the_specialist_invites_an_interpreter_and_the_sms_carries_a_single_use_link(
    sms_client: Client, twilio: TwilioServer, sms_db: asyncpg.Pool, consultation: Consultation
) -> None:
    c = consultation
    phone = new_guest_phone()
    answer = await invite(sms_client, c.appointment_id, c.specialist.token, phone=phone, locale="vi")
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert (created["role"], created["language"], created["locale"], created["state"]) == (
        "interpreter",
        "km",
        "vi",
        "pending",
    )
    assert created["name"] == "Chan Dara"
    assert created["phone"] == phone
    link = await sms_link(twilio, phone)
    assert link.locale == "vi"
    assert "buổi khám từ xa" in link.body  # the Vietnamese text, naming no patient nor doctor
    assert link.token not in answer.text  # the link is in the SMS only
    row = await sms_db.fetchrow(
        "SELECT token_hash, device_hash, sms_id FROM consultation_invitations WHERE id = $1", uuid.UUID(created["id"])
    )
    assert row is not None
    assert bytes(row["token_hash"]) == hashlib.sha256(link.token.encode()).digest()  # only its hash is kept
    assert row["device_hash"] is None
    # The ledger forgets the text once it has left, as it does a sign-in code.
    await eventually(sms_db, "SELECT status FROM sms_messages WHERE id = $1", row["sms_id"], expect="sent")
    assert await sms_db.fetchval("SELECT body FROM sms_messages WHERE id = $1", row["sms_id"]) is None
    assert (
        await sms_db.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'invite' AND resource_id = $1 AND patient_id = $2",
            created["id"],
            c.patient.patient_id,
        )
        == 1
    )

    # The first browser to open the link keeps it; the same browser may open it again.
    mine, theirs = _key(), _key()
    status, opened = await _open(sms_client, link.token, mine)
    assert status == 200, opened
    assert (opened["appointment_id"], opened["role"], opened["language"]) == (
        str(c.appointment_id),
        "interpreter",
        "km",
    )
    assert set(opened) == {
        "invitation_id", "appointment_id", "role", "language", "name", "locale", "start", "end", "expires_at"
    }  # fmt: skip  # nothing of the patient
    assert (await _open(sms_client, link.token, mine))[0] == 200
    status, refused = await _open(sms_client, link.token, theirs)
    assert (status, refused["code"]) == (409, "invitation_used")
    outcomes = await sms_db.fetch(
        "SELECT outcome, actor_role, purpose FROM audit_events WHERE action = 'open_invitation' AND resource_id = $1",
        created["id"],
    )
    assert sorted(r["outcome"] for r in outcomes) == ["refused", "success", "success"]
    assert {(r["actor_role"], r["purpose"]) for r in outcomes} == {("guest", "interpreter")}
    path = f"/v1/appointments/{c.appointment_id}/invitations"
    listed = (await sms_client.get(path, headers=c.specialist.headers)).json()
    assert [(i["id"], i["state"], i["sms_status"]) for i in listed["items"]] == [(created["id"], "opened", "sent")]


async def test_the_sms_is_in_the_patients_language_unless_told_and_a_retry_sends_nothing_twice(
    sms_client: Client, twilio: TwilioServer, sms_db: asyncpg.Pool, consultation: Consultation
) -> None:
    c = consultation
    await sms_db.execute("UPDATE patients SET preferred_language = 'km' WHERE id = $1", c.patient.patient_id)
    phone = new_guest_phone()
    body = {"phone": phone, "name": "Sok Mealea", "role": "family_member"}
    headers = auth(c.chw.token, **{"Idempotency-Key": "invite-mealea"})  # the CHW who booked it
    first = await sms_client.post(f"/v1/appointments/{c.appointment_id}/invitations", json=body, headers=headers)
    again = await sms_client.post(f"/v1/appointments/{c.appointment_id}/invitations", json=body, headers=headers)
    assert first.status_code == again.status_code == 201, first.text
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    link = await sms_link(twilio, phone)
    assert (link.locale, first.json()["locale"]) == ("km", "km")
    assert "ការពិគ្រោះតាមវីដេអូ" in link.body
    assert (
        await sms_db.fetchval(
            "SELECT count(*) FROM consultation_invitations WHERE appointment_id = $1", c.appointment_id
        )
        == 1
    )
    assert await sms_db.fetchval("SELECT count(*) FROM sms_messages WHERE to_phone = $1", phone) == 1


async def test_bad_invitations_are_refused_with_their_code(
    sms_client: Client, sms_db: asyncpg.Pool, consultation: Consultation
) -> None:
    c = consultation
    token = c.specialist.token
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"language": None}, 422, "language_required", "language"),
        ({"role": "family_member"}, 422, "language_not_allowed", "language"),
        ({"language": "Khmer!"}, 422, "invalid_language", "language"),
        ({"phone": "12"}, 422, "invalid_phone", "phone"),
        ({"phone": "+33612345678"}, 422, "sms_country_not_allowed", "phone"),  # France: not in SPEAN_SMS_COUNTRIES
        ({"name": "   "}, 422, "invalid_name", "name"),
    ]
    for change, status, code, field in cases:
        answer = await invite(sms_client, c.appointment_id, token, **change)
        assert answer.status_code == status, (change, answer.text)
        assert answer.json()["code"] == code
        assert [e["field"] for e in answer.json().get("errors", [])] == [field], answer.json()
    decoded = await invite(sms_client, c.appointment_id, token, role="nurse")
    assert decoded.status_code == 400
    assert (
        await sms_db.fetchval(
            "SELECT count(*) FROM consultation_invitations WHERE appointment_id = $1", c.appointment_id
        )
        == 0
    )
    # One live invitation per number, and at most four guests.
    phone = new_guest_phone()
    assert (await invite(sms_client, c.appointment_id, token, phone=phone)).status_code == 201
    twice = await invite(sms_client, c.appointment_id, token, phone=phone)
    assert (twice.status_code, twice.json()["code"]) == (409, "already_invited")
    for _ in range(3):
        assert (await invite(sms_client, c.appointment_id, token)).status_code == 201
    fifth = await invite(sms_client, c.appointment_id, token)
    assert (fifth.status_code, fifth.json()["code"]) == (409, "too_many_guests")


async def test_who_may_invite_list_and_revoke(
    sms_client: Client, sms_factory: Factory, consultation: Consultation
) -> None:
    c = consultation
    path = f"/v1/appointments/{c.appointment_id}/invitations"
    other_centre = await sms_factory.facility()
    stranger = await sms_factory.staff(other_centre)
    centre_admin = await sms_factory.facility_admin(c.centre)
    refused = {
        c.patient.token: (403, "role_required"),  # the patient sees the consultation but invites nobody
        centre_admin: (403, "role_required"),  # administers the centre, does not treat
        stranger.token: (403, "appointment_access_denied"),
    }
    for token, (status, code) in refused.items():
        answer = await invite(sms_client, c.appointment_id, token)
        assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert (await invite(sms_client, uuid.uuid4(), c.specialist.token)).status_code == 404
    created = (await invite(sms_client, c.appointment_id, c.chw.token)).json()
    # Whoever may see the appointment sees its guests; nobody else.
    for token in (c.specialist.token, c.chw.token, c.patient.token, centre_admin):
        listed = await sms_client.get(path, headers=auth(token))
        assert listed.status_code == 200, listed.text
        assert [i["id"] for i in listed.json()["items"]] == [created["id"]]
    denied = await sms_client.get(path, headers=auth(stranger.token))
    assert (denied.status_code, denied.json()["code"]) == (403, "appointment_access_denied")
    # Revoking: the care team only; twice is a 409; an invitation of another consultation a 404.
    revoke = f"{path}/{created['id']}/revoke"
    for token in (c.patient.token, centre_admin):
        assert (await sms_client.post(revoke, headers=auth(token))).status_code == 403
    assert (await sms_client.post(f"{path}/{uuid.uuid4()}/revoke", headers=c.specialist.headers)).status_code == 404
    done = await sms_client.post(revoke, headers=c.specialist.headers)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "revoked"
    again = await sms_client.post(revoke, headers=c.specialist.headers)
    assert (again.status_code, again.json()["code"]) == (409, "already_revoked")


async def test_a_revoked_or_expired_link_is_refused(
    sms_client: Client, twilio: TwilioServer, sms_db: asyncpg.Pool, consultation: Consultation
) -> None:
    c = consultation
    revoked_phone, expiring_phone = new_guest_phone(), new_guest_phone()
    revoked = (await invite(sms_client, c.appointment_id, c.specialist.token, phone=revoked_phone)).json()
    await invite(sms_client, c.appointment_id, c.specialist.token, phone=expiring_phone)
    revoked_link, expiring_link = await sms_link(twilio, revoked_phone), await sms_link(twilio, expiring_phone)
    path = f"/v1/appointments/{c.appointment_id}/invitations/{revoked['id']}/revoke"
    assert (await sms_client.post(path, headers=c.specialist.headers)).status_code == 200
    status, body = await _open(sms_client, revoked_link.token, _key())
    assert (status, body["code"]) == (403, "invitation_revoked")
    assert (
        await sms_db.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'revoke_invitation' AND resource_id = $1", revoked["id"]
        )
        == 1
    )
    # The link works until the room closes, 60 minutes after the consultation's end.
    await move(sms_db, c.appointment_id, start_in_min=-120, minutes=30)
    status, body = await _open(sms_client, expiring_link.token, _key())
    assert (status, body["code"]) == (409, "invitation_expired")
    path = f"/v1/appointments/{c.appointment_id}/invitations"
    listed = (await sms_client.get(path, headers=c.specialist.headers)).json()
    assert sorted(i["state"] for i in listed["items"]) == ["expired", "revoked"]
    late = await invite(sms_client, c.appointment_id, c.specialist.token)
    assert (late.status_code, late.json()["code"]) == (409, "outside_consultation_window")
    # A cancelled consultation's links are dead too.
    await move(sms_db, c.appointment_id, start_in_min=5)
    await sms_db.execute("UPDATE appointments SET status = 'cancelled' WHERE id = $1", c.appointment_id)
    status, body = await _open(sms_client, expiring_link.token, _key())
    assert (status, body["code"]) == (409, "invitation_expired")
    unknown = await _open(sms_client, "A" * 22, _key())
    assert (unknown[0], unknown[1]["code"]) == (404, "invitation_not_found")


async def test_a_link_opened_too_early_is_not_used_up(
    sms_client: Client, twilio: TwilioServer, sms_db: asyncpg.Pool, consultation: Consultation
) -> None:
    """A guest who taps the SMS hours before is told when to come back, and nothing is claimed: at
    the time, they may open it in another browser."""
    c = consultation
    await move(sms_db, c.appointment_id, start_in_min=180)
    phone = new_guest_phone()
    created = (await invite(sms_client, c.appointment_id, c.specialist.token, phone=phone)).json()
    link = await sms_link(twilio, phone)
    status, body = await _open(sms_client, link.token, _key())
    assert (status, body["code"]) == (409, "too_early")
    start = await sms_db.fetchval("SELECT start_at FROM appointments WHERE id = $1", c.appointment_id)
    assert datetime.fromisoformat(body["extra"]["opens_at"]) == start - timedelta(minutes=60)
    assert (
        await sms_db.fetchval("SELECT opened_at FROM consultation_invitations WHERE id = $1", uuid.UUID(created["id"]))
        is None
    )
    await move(sms_db, c.appointment_id, start_in_min=5)
    assert (await _open(sms_client, link.token, _key()))[0] == 200


async def test_bad_open_requests_are_refused(sms_client: Client) -> None:
    for body in ({"token": "short", "device": _key()}, {"token": "A" * 22}, {"token": "A" * 22, "device": "x"}):
        answer = await sms_client.post("/v1/invitations/open", json=body)
        assert answer.status_code == 400, (body, answer.text)
