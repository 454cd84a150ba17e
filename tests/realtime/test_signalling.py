"""The signalling server through real sockets on two server processes: rooms, waiting room,
relay across workers through Redis, resume after a drop, and refusal of bad input."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

import asyncpg
import httpx

from domain.identity.tokens import issue_access_token
from domain.principal import Principal
from infra.config import Settings
from tests.factory import Consultation, Factory, auth
from tests.realtime.client import Signal
from tests.realtime.conftest import Servers


async def test_waiting_room_relay_across_workers_resume_and_end(
    rtc_servers: Servers, consultation: Consultation, db: asyncpg.Pool
) -> None:
    c = consultation
    patient = await Signal.open(rtc_servers.b)
    ready = await patient.join(c.patient.token, c.appointment_id)
    assert (ready["side"], ready["state"]) == ("patient", "waiting")
    status = await db.fetchval("SELECT status FROM appointments WHERE id = $1", c.appointment_id)
    assert status == "checked_in"  # entering the waiting room checks the patient in

    specialist = await Signal.open(rtc_servers.a)
    ready_s = await specialist.join(c.specialist.token, c.appointment_id)
    assert ready_s["peers"][ready["peer"]]["state"] == "waiting"
    # A waiting peer cannot signal yet.
    await patient.send(type="chat", text="hello?")
    assert (await patient.next("error"))["code"] == "not_admitted"

    await specialist.send(type="admit", peer=ready["peer"])
    try:
        assert (await patient.next("admitted"))["peer"] == ready["peer"]
    except TimeoutError:
        raise AssertionError(f"patient saw {patient.seen}; specialist saw {specialist.seen}") from None
    joined = await specialist.next("peer_joined")
    assert joined["peer"] == ready["peer"]
    assert await db.fetchval("SELECT status FROM appointments WHERE id = $1", c.appointment_id) == "in_progress"

    # Relay both ways across the two workers.
    await specialist.send(type="offer", to=ready["peer"], sdp="v=0 fake offer")
    offer = await patient.next("offer")
    assert (offer["from"], offer["sdp"]) == (ready_s["peer"], "v=0 fake offer")
    await patient.send(type="answer", to=ready_s["peer"], sdp="v=0 fake answer")
    assert (await specialist.next("answer"))["sdp"] == "v=0 fake answer"
    await patient.send(
        type="ice", to=ready_s["peer"], candidate={"candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host"}
    )
    assert (await specialist.next("ice"))["candidate"]["candidate"].startswith("candidate:1")
    await patient.send(type="media", audio=False, video=True)
    assert (await specialist.next("media"))["audio"] is False
    await patient.send(type="audio_only", enabled=True)
    assert (await specialist.next("audio_only"))["enabled"] is True
    last_seq = offer["seq"]

    # The patient's link drops; while away the specialist sends an ICE-restart offer and a chat.
    await patient.close()
    assert (await specialist.next("peer_disconnected"))["peer"] == ready["peer"]
    await specialist.send(type="offer", to=ready["peer"], sdp="v=0 restart", ice_restart=True)
    await specialist.send(type="chat", text="are you there?")
    # It comes back on the OTHER worker within the grace period and gets what it missed.
    back = await Signal.open(rtc_servers.a)
    resumed = await back.join(c.patient.token, c.appointment_id, resume=ready["session"], last_seq=last_seq)
    assert resumed["resumed"] is True
    assert (resumed["peer"], resumed["state"]) == (ready["peer"], "admitted")
    missed = [await back.next(), await back.next()]
    assert [m["type"] for m in missed] == ["offer", "chat"]
    assert missed[0]["ice_restart"] is True
    assert all(m["replayed"] for m in missed)
    assert (await specialist.next("peer_joined"))["resumed"] is True

    await specialist.send(type="end")
    ended = await back.next("ended")
    assert ended["duration_s"] >= 0
    assert await back.closed_with() == 1000
    row = await db.fetchrow("SELECT status, call_seconds FROM appointments WHERE id = $1", c.appointment_id)
    assert row is not None
    assert row["status"] == "in_progress"  # until the specialist completes it with results
    assert row["call_seconds"] is not None
    # The call is over; the specialist completes the consultation (results go to the record).
    async with httpx.AsyncClient(base_url=rtc_servers.http_a) as http:
        done = await http.post(
            f"/v1/appointments/{c.appointment_id}/complete", json={}, headers=auth(c.specialist.token)
        )
    assert done.status_code in (200, 201), done.text
    assert await db.fetchval("SELECT status FROM appointments WHERE id = $1", c.appointment_id) == "completed"
    events = await db.fetch(
        "SELECT action FROM appointment_events WHERE appointment_id = $1 ORDER BY id", c.appointment_id
    )
    assert [e["action"] for e in events] == ["book", "check_in", "start_call", "end_call", "complete"]


async def test_bad_input_is_refused_and_the_room_survives(
    rtc_servers: Servers, consultation: Consultation, factory: Factory, settings: Settings
) -> None:
    c = consultation
    specialist = await Signal.open(rtc_servers.a)
    await specialist.join(c.specialist.token, c.appointment_id)

    # Garbage, unknown types and wrong fields get an error; the socket stays.
    for frame in ("not json", '{"type": "teleport"}', '{"type": "chat", "text": 5}', "[]"):
        await specialist.ws.send(frame)
        assert (await specialist.next("error"))["code"] == "malformed_message"
    await specialist.ws.send(b"\x00\xff binary garbage")
    assert (await specialist.next("error"))["code"] == "malformed_message"
    await specialist.send(type="offer", to="nobody", sdp="x")
    assert (await specialist.next("error"))["code"] == "unknown_peer"
    await specialist.send(type="ping")
    assert (await specialist.next("pong"))["type"] == "pong"

    # Oversized frame: closed with 1009 (on its own socket).
    big = await Signal.open(rtc_servers.b)
    await big.join(c.chw.token, c.appointment_id)
    await big.ws.send("x" * 70_000)
    assert await big.closed_with() == 1009

    # Expired token, no auth first, a stranger, an unknown room: refused with their codes.
    expired = issue_access_token(
        Principal(user_id=c.patient.patient_id), settings.secret_key, 60, now=time.time() - 600
    )
    s = await Signal.open(rtc_servers.b)
    await s.send(type="auth", token=expired)
    assert await s.closed_with() == 4401
    s = await Signal.open(rtc_servers.b)
    await s.send(type="join", appointment_id=str(c.appointment_id))
    assert await s.closed_with() == 4401
    stranger = await factory.patient_login(c.chw.facility_id)
    s = await Signal.open(rtc_servers.b)
    await s.send(type="auth", token=stranger.token)
    await s.send(type="join", appointment_id=str(c.appointment_id))
    assert await s.closed_with() == 4403
    s = await Signal.open(rtc_servers.b)
    await s.send(type="auth", token=c.patient.token)
    await s.send(type="join", appointment_id=str(uuid.uuid4()))
    assert await s.closed_with() == 4404

    # A flood is slowed, then cut off with 4429.
    flood = await Signal.open(rtc_servers.b)
    await flood.join(c.chw.token, c.appointment_id)
    for _ in range(200):
        await flood.send(type="ping")
    assert await flood.closed_with() == 4429
    assert any(m.get("code") == "rate_limited" for m in flood.seen)

    # The room is unaffected: the specialist still relays.
    await specialist.send(type="ping")
    assert (await specialist.next("pong"))["type"] == "pong"
    await specialist.close()


async def test_ice_servers_carry_coturn_credentials(rtc_servers: Servers, consultation: Consultation) -> None:
    async with httpx.AsyncClient(base_url=rtc_servers.http_a) as http:
        response = await http.get("/v1/rtc/ice-servers", headers=auth(consultation.patient.token))
        page = await http.get("/rtc/consult")
    body = response.json()
    stun, turn = body["ice_servers"]
    assert stun == {"urls": ["stun:127.0.0.1:3478"]}
    expiry, user = turn["username"].split(":")
    assert user == str(consultation.patient.user_id)
    assert abs(int(expiry) - (time.time() + body["ttl"])) < 10
    digest = hmac.new(b"coturn-secret", turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(digest).decode()
    assert "/v1/rtc" in page.text
    assert page.headers["content-type"].startswith("text/html")


async def test_presence_survives_a_worker_dying(rtc_servers: Servers, consultation: Consultation) -> None:
    c = consultation
    specialist = await Signal.open(rtc_servers.a)
    await specialist.join(c.specialist.token, c.appointment_id)
    patient = await Signal.open(rtc_servers.b)
    ready = await patient.join(c.patient.token, c.appointment_id)
    await specialist.send(type="admit", peer=ready["peer"])
    await patient.next("admitted")

    rtc_servers.kill_and_restart_b()

    # The room, the peer and its admission live in Redis: the patient resumes on the new worker B.
    back = await Signal.open(rtc_servers.b)
    resumed = await back.join(c.patient.token, c.appointment_id, resume=ready["session"])
    assert (resumed["peer"], resumed["state"], resumed["resumed"]) == (ready["peer"], "admitted", True)
    await specialist.send(type="chat", text="still there?")
    assert (await back.next("chat"))["text"] == "still there?"
    await back.send(type="chat", text="yes")
    assert (await specialist.next("chat"))["text"] == "yes"
    await specialist.send(type="end")
    assert (await back.next("ended"))["type"] == "ended"


async def test_the_room_names_its_participants(
    rtc_servers: Servers, consultation: Consultation, db: asyncpg.Pool
) -> None:
    """peer_waiting, peer_joined and ready's peers carry `name`: the patient's name for the
    patient side, "<patient> (with <worker>)" for the health worker beside them, the specialist's."""
    c = consultation
    patient_name = await db.fetchval("SELECT names->0->>'text' FROM patients WHERE id = $1", c.patient.patient_id)
    chw_name = await db.fetchval("SELECT name FROM practitioners WHERE id = $1", c.chw.practitioner_id)
    doctor_name = await db.fetchval("SELECT name FROM practitioners WHERE id = $1", c.specialist.practitioner_id)
    specialist = await Signal.open(rtc_servers.a)
    await specialist.join(c.specialist.token, c.appointment_id)
    patient = await Signal.open(rtc_servers.b)
    ready = await patient.join(c.patient.token, c.appointment_id)
    assert ready["name"] == patient_name
    assert [p["name"] for p in ready["peers"].values()] == [doctor_name]
    waiting = await specialist.next("peer_waiting")
    assert (waiting["peer"], waiting["side"], waiting["name"]) == (ready["peer"], "patient", patient_name)
    chw = await Signal.open(rtc_servers.a)
    beside = await chw.join(c.chw.token, c.appointment_id)
    assert beside["name"] == f"{patient_name} (with {chw_name})"
    assert {p["name"] for p in beside["peers"].values()} == {doctor_name, patient_name}
    await specialist.send(type="admit", peer=ready["peer"])
    joined = await specialist.next("peer_joined")
    assert (joined["peer"], joined["name"]) == (ready["peer"], patient_name)
    for socket in (specialist, patient, chw):
        await socket.close()
