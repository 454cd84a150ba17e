"""Guests in the room, over real WebSockets to two `spean serve` processes: a guest waits, is
admitted like the patient, is named with their role, can join only their consultation, loses
their place at once when revoked (from the other worker), and one link opened by two people at
once lets one in."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Consultation, Factory, auth, iso, move, next_local
from tests.invitations.conftest import Link, Live, eventually, invite, new_guest_phone, sms_link
from tests.realtime.client import Signal
from tests.twilio_server import TwilioServer

Client = AsyncTestClient[Litestar]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def _device() -> str:
    return secrets.token_urlsafe(24)


async def _invited(client: Client, twilio: TwilioServer, c: Consultation, **body: Any) -> tuple[dict[str, Any], Link]:
    phone = new_guest_phone()
    answer = await invite(client, c.appointment_id, c.specialist.token, phone=phone, **body)
    assert answer.status_code == 201, answer.text
    return answer.json(), await sms_link(twilio, phone)


async def _opened(http: httpx.AsyncClient, base: str, link: Link, device: str) -> dict[str, Any]:
    answer = await http.post(f"{base}/v1/invitations/open", json={"token": link.token, "device": device})
    assert answer.status_code == 200, answer.text
    opened: dict[str, Any] = answer.json()
    return opened


async def _guest(url: str, token: str, device: str, appointment_id: object, **extra: Any) -> Signal:
    signal = await Signal.open(url)
    await signal.send(type="guest", token=token, device=device)
    await signal.send(type="join", appointment_id=str(appointment_id), **extra)
    return signal


async def test_a_guest_waits_is_admitted_like_the_patient_and_the_room_says_who_is_who(
    live: Live,
    sms_client: Client,
    twilio: TwilioServer,
    sms_db: asyncpg.Pool,
    consultation: Consultation,
    http: httpx.AsyncClient,
) -> None:
    c = consultation
    invitation, link = await _invited(sms_client, twilio, c)
    device = _device()
    await _opened(http, live.urls[0], link, device)
    patient = await Signal.open(live.ws(0))
    patient_ready = await patient.join(c.patient.token, c.appointment_id)
    specialist = await Signal.open(live.ws(0))
    await specialist.join(c.specialist.token, c.appointment_id)
    await specialist.send(type="admit", peer=patient_ready["peer"])
    await patient.next("admitted")

    guest = await _guest(live.ws(1), link.token, device, c.appointment_id)
    ready = await guest.next("ready")
    assert (ready["side"], ready["role"], ready["language"], ready["name"], ready["state"]) == (
        "guest",
        "interpreter",
        "km",
        "Chan Dara",
        "waiting",
    )
    # No access token for /v1/rtc/ice-servers: the guest's TURN credentials come with `ready`.
    turn = [s for s in ready["ice_servers"] if any(u.startswith("turn:") for u in s["urls"])]
    assert turn
    assert turn[0]["username"].endswith(f":guest:{invitation['id']}")
    roles = {(p["side"], p["role"], p["language"]) for p in ready["peers"].values()}
    assert roles == {("specialist", "specialist", None), ("patient", "patient", None)}
    waiting = await specialist.next("peer_waiting")
    assert (waiting["peer"], waiting["side"], waiting["role"], waiting["language"], waiting["name"]) == (
        ready["peer"],
        "guest",
        "interpreter",
        "km",
        "Chan Dara",
    )
    # Waiting: nothing to relay yet, and a guest never admits or ends.
    await guest.send(type="chat", text="hello")
    assert (await guest.next("error"))["code"] == "not_admitted"
    for attempt in ({"type": "admit", "peer": patient_ready["peer"]}, {"type": "end"}):
        await guest.send(**attempt)
        assert (await guest.next("error"))["code"] == "specialist_only"

    await specialist.send(type="admit", peer=ready["peer"])
    await guest.next("admitted")
    joined = await patient.next("peer_joined")
    assert (joined["peer"], joined["role"], joined["language"], joined["name"]) == (
        ready["peer"],
        "interpreter",
        "km",
        "Chan Dara",
    )
    await guest.send(type="offer", to=_specialist_peer(ready), sdp="v=0 guest offer")
    offer = await specialist.next("offer")
    assert (offer["from"], offer["sdp"]) == (ready["peer"], "v=0 guest offer")
    audit = await sms_db.fetchrow(
        "SELECT actor_user_id, actor_role, purpose, patient_id FROM audit_events "
        "WHERE action = 'join_call' AND resource_id = $1",
        invitation["id"],
    )
    assert audit is not None
    assert (audit["actor_user_id"], audit["actor_role"], audit["purpose"], audit["patient_id"]) == (
        None,
        "guest",
        "interpreter",
        c.patient.patient_id,
    )
    listed = await sms_client.get(f"/v1/appointments/{c.appointment_id}/invitations", headers=c.specialist.headers)
    assert [i["state"] for i in listed.json()["items"]] == ["joined"]
    # The guest leaves: the call goes on.
    await guest.send(type="leave")
    assert (await specialist.next("peer_left"))["peer"] == ready["peer"]
    await specialist.send(type="ping")
    assert (await specialist.next())["type"] == "pong"
    for signal in (guest, patient, specialist):
        await signal.close()


def _specialist_peer(ready: dict[str, Any]) -> str:
    return str(next(pid for pid, p in ready["peers"].items() if p["side"] == "specialist"))


async def test_the_guest_credential_joins_its_own_consultation_and_nothing_else(
    live: Live,
    sms_client: Client,
    sms_factory: Factory,
    twilio: TwilioServer,
    sms_db: asyncpg.Pool,
    consultation: Consultation,
    http: httpx.AsyncClient,
) -> None:
    c = consultation
    _, link = await _invited(sms_client, twilio, c)
    _, unopened = await _invited(sms_client, twilio, c)
    device = _device()
    await _opened(http, live.urls[1], link, device)
    # Another consultation of the same specialist, with another patient of the post.
    other_patient = await sms_factory.patient(c.post, token=c.chw.token)
    other = await sms_factory.post(
        "/v1/appointments",
        {
            "patient_id": str(other_patient),
            "practitioner_id": str(c.specialist.practitioner_id),
            "start": iso(next_local("Asia/Phnom_Penh", "11:00")),
        },
        c.chw.token,
    )
    attempts = [
        # (first frame, appointment, close code, error code)
        ({"type": "guest", "token": link.token, "device": device}, other["id"], 4403, "not_a_participant"),
        ({"type": "auth", "token": link.token}, c.appointment_id, 4401, "invalid_token"),
        ({"type": "auth", "token": device}, c.appointment_id, 4401, "invalid_token"),
        ({"type": "guest", "token": link.token, "device": _device()}, c.appointment_id, 4401, None),
        ({"type": "guest", "token": unopened.token, "device": device}, c.appointment_id, 4401, None),
    ]
    for first, appointment, close, code in attempts:
        signal = await Signal.open(live.ws(0))
        await signal.send(**first)
        await signal.send(type="join", appointment_id=str(appointment))
        assert await signal.closed_with() == close, first
        errors = [m["code"] for m in signal.seen if m["type"] == "error"]
        assert errors == [code or "invalid_guest_credentials"], (first, signal.seen)
    # When the room has closed (an hour after the end), the link no longer joins.
    await move(sms_db, c.appointment_id, start_in_min=-150)
    late = await _guest(live.ws(0), link.token, device, c.appointment_id)
    assert await late.closed_with() == 4409
    assert [m["code"] for m in late.seen if m["type"] == "error"] == ["outside_consultation_window"]


async def test_revoking_takes_a_joined_guest_out_of_the_room_from_the_other_worker(
    live: Live,
    sms_client: Client,
    twilio: TwilioServer,
    sms_db: asyncpg.Pool,
    consultation: Consultation,
    http: httpx.AsyncClient,
) -> None:
    c = consultation
    invitation, link = await _invited(sms_client, twilio, c, role="family_member", language=None)
    device = _device()
    await _opened(http, live.urls[1], link, device)
    specialist = await Signal.open(live.ws(0))
    await specialist.join(c.specialist.token, c.appointment_id)
    guest = await _guest(live.ws(1), link.token, device, c.appointment_id)
    ready = await guest.next("ready")
    assert (ready["role"], ready["language"]) == ("family_member", None)
    await specialist.next("peer_waiting")
    await specialist.send(type="admit", peer=ready["peer"])
    await guest.next("admitted")
    await specialist.next("peer_joined")

    path = f"/v1/appointments/{c.appointment_id}/invitations/{invitation['id']}/revoke"
    revoked = await http.post(f"{live.urls[0]}{path}", headers=auth(c.specialist.token))
    assert revoked.status_code == 200, revoked.text
    assert await guest.closed_with() == 4403
    assert "revoked" in [m["type"] for m in guest.seen]
    left = await specialist.next("peer_left")
    assert (left["peer"], left["reason"]) == (ready["peer"], "revoked")
    # Its place is gone: neither a resume nor a fresh join gets back in.
    for extra in ({"resume": ready["session"]}, {}):
        again = await _guest(live.ws(0), link.token, device, c.appointment_id, **extra)
        assert await again.closed_with() == 4403
        assert [m["code"] for m in again.seen if m["type"] == "error"] == ["invitation_revoked"]
    await eventually(
        sms_db,
        "SELECT count(*) FROM audit_events WHERE action = 'revoke_invitation' AND resource_id = $1",
        invitation["id"],
        expect=1,
    )
    await specialist.close()


async def test_two_people_opening_one_link_at_once_one_gets_in(
    live: Live,
    sms_client: Client,
    twilio: TwilioServer,
    sms_db: asyncpg.Pool,
    consultation: Consultation,
    http: httpx.AsyncClient,
) -> None:
    """Each pair of openings races on the two server processes; in every round exactly one
    browser owns the link, the other is told it is used, and only the owner joins the room."""
    c = consultation
    for _ in range(4):  # the consultation's four guests
        invitation, link = await _invited(sms_client, twilio, c)
        devices = (_device(), _device())
        answers = await asyncio.gather(
            *(
                http.post(f"{base}/v1/invitations/open", json={"token": link.token, "device": device})
                for base, device in zip(live.urls, devices, strict=True)
            )
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 409], [a.text for a in answers]
        loser = next(a for a in answers if a.status_code == 409)
        assert loser.json()["code"] == "invitation_used"
        winner = devices[[a.status_code for a in answers].index(200)]
        loser_device = devices[1 - devices.index(winner)]
        shut_out = await _guest(live.ws(0), link.token, loser_device, c.appointment_id)
        assert await shut_out.closed_with() == 4401
        inside = await _guest(live.ws(1), link.token, winner, c.appointment_id)
        assert (await inside.next("ready"))["state"] == "waiting"
        await inside.send(type="leave")
        await inside.close()
        outcomes = await sms_db.fetch(
            "SELECT outcome FROM audit_events WHERE action = 'open_invitation' AND resource_id = $1", invitation["id"]
        )
        assert sorted(r["outcome"] for r in outcomes) == ["refused", "success"]
