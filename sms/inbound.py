"""An inbound SMS, once per MessageSid: the keyword's action through the same domain functions
as the app (access rules, audit with channel `sms`), and the answer queued in the SMS ledger in
the same transaction, so it leaves after commit, is recorded, retried and counted like any
message (sms.outbox), rather than returned as TwiML that nothing records.

MOVE n offers the next free time of the same practitioner and asks YES/NO: the question waits in
Redis (sms.conversation, 15 minutes), and YES moves the appointment through the same domain
function as the app (a time taken meanwhile is said so, never double-booked).

Opt-out (STOP) is by phone number: it covers every patient on a shared family phone and numbers
Spean does not know. Answers to a patient's own message are essential (sent even after STOP: the
patient asked), like sign-in codes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
from redis.asyncio import Redis

from domain.booking import appointments
from domain.booking.appointments import AppointmentQuery
from domain.booking.model import Appointment
from domain.identity import users
from domain.principal import Principal
from infra.db import Connection
from sms import conversation, keywords, texts
from sms.outbox import SmsOutbox

_LISTED = 5  # appointments listed by MY (and numbered for CANCEL n)


async def handle(
    conn: Connection, outbox: SmsOutbox, redis: Redis, *, message_sid: str, from_phone: str, body: str
) -> uuid.UUID | None:
    """Act on one inbound SMS; the id of the queued answer (None: a repeat, or nothing to send)."""
    command = keywords.parse(body)
    first = await conn.fetchval(
        """INSERT INTO sms_inbound (message_sid, from_phone, keyword) VALUES ($1, $2, $3)
           ON CONFLICT (message_sid) DO NOTHING RETURNING true""",
        message_sid,
        from_phone,
        command.action,
    )
    if not first:  # Twilio retried, or its fallback URL called too: already handled
        return None
    patient_language = await conn.fetchval(
        "SELECT preferred_language FROM patients WHERE phone = $1 ORDER BY created_at LIMIT 1", from_phone
    )
    language = patient_language or command.language or texts.language_for_phone(from_phone)
    template, values = await _act(conn, redis, command, from_phone, registered=patient_language is not None)
    return await outbox.enqueue(
        conn,
        to=from_phone,
        template=template,
        language=language,
        values=values,
        key=f"in:{message_sid}",
        essential=True,
    )


async def _act(
    conn: Connection, redis: Redis, command: keywords.Command, phone: str, *, registered: bool
) -> tuple[str, dict[str, object]]:
    if command.action == "stop":
        await conn.execute("INSERT INTO sms_opt_outs (phone) VALUES ($1) ON CONFLICT DO NOTHING", phone)
        return "sms_stopped", {}
    if command.action == "start":
        await conn.execute("DELETE FROM sms_opt_outs WHERE phone = $1", phone)
        return "sms_started", {}
    if command.action in ("help", "unknown"):
        return "sms_help", {}
    if not registered:
        return "sms_unknown_number", {}
    principal = await _principal(conn, phone)
    if command.action in ("yes", "no"):
        return await conversation.answer(conn, redis, principal, phone, yes=command.action == "yes")
    upcoming = await _upcoming(conn, principal)
    if command.action == "my":
        if not upcoming:
            return "sms_my_none", {}
        language = "en"  # items are numbers and dates: the same in every language
        items = ", ".join(texts.text(language, "sms_my_item", n=i, when=_when(a)) for i, a in enumerate(upcoming, 1))
        return "sms_my_list", {"items": items}
    number = command.number or 0
    if not 1 <= number <= len(upcoming):
        return "sms_cancel_unknown", {"n": number}
    chosen = upcoming[number - 1]
    if command.action == "move":
        return await conversation.offer_move(conn, redis, phone, chosen)
    if await conversation.refused_by_domain(
        appointments.cancel(conn, principal, chosen.id, reason="cancelled by SMS"), conn
    ):
        return "sms_cancel_refused", {}
    return "sms_cancelled", {"when": _when(chosen)}


async def _principal(conn: Connection, phone: str) -> Principal:
    """The patient's login, as the app's first sign-in makes it: owning the number is what an
    inbound SMS from it shows (as the OTP does)."""
    user_id = await users.login(conn, phone)
    assert user_id is not None  # a patient is registered with this phone
    return msgspec.structs.replace(await users.load_principal(conn, user_id), channel="sms")


async def _upcoming(conn: Connection, principal: Principal) -> list[Appointment]:
    """The patient's own booked appointments to come, by start: what MY numbers and CANCEL n picks
    from (a staff member's phone sees only the patients registered with it, not its facility's)."""
    own = {
        r["patient_id"]
        for r in await conn.fetch("SELECT patient_id FROM patient_accounts WHERE user_id = $1", principal.user_id)
    }
    found = await appointments.search(
        conn, principal, AppointmentQuery(status="booked", start_from=datetime.now(UTC), limit=200)
    )
    return [a for a in found if a.patient_id in own][:_LISTED]


def _when(appointment: Appointment) -> str:
    return conversation.wall_clock(appointment.start, appointment.timezone)
