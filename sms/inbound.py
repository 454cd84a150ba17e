"""An inbound SMS, once per MessageSid: the keyword's action (or the answer to the question Spean
asked: sms.conversation) through the same domain functions as the app (access rules, audit with
channel `sms`, the same double-booking guarantee), and the answer queued in the SMS ledger in the
same transaction, so it leaves after commit, is recorded, retried and counted like any message
(sms.outbox), rather than returned as TwiML that nothing records.

The journeys (sms/journeys/): BOOK (what can be booked → free times → a number → YES), MY,
CANCEL n, MOVE n (→ YES/NO), CONSENT, WITHDRAW (→ YES/NO), and REGISTER for a number Spean does
not know (name, birth year, village, health post). A question waits 15 minutes in Redis; an
answer that fits no open question, and any text Spean does not understand, gets the short help
in the patient's language: never silence.

A registered number acts as its login, as the app's first sign-in makes it: owning the number is
what an inbound SMS from it shows (as the sign-in code does), for the first patient registered
with that phone (a shared family phone books for that patient; the others use the app or USSD).

Opt-out (STOP) is by phone number: it covers every patient on a shared family phone and numbers
Spean does not know. Answers to a patient's own message are essential (sent even after STOP: the
patient asked), like sign-in codes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from domain.booking import appointments
from domain.booking.appointments import AppointmentQuery
from domain.booking.model import Appointment
from domain.identity import users
from domain.principal import Principal
from infra.db import Connection
from infra.redis_client import RedisClient
from sms import conversation, keywords, texts
from sms.conversation import AskBook, AskMove, AskNeed, AskRegister, AskSlot, AskWithdraw, Reply
from sms.journeys import book, consent, move, register
from sms.journeys.turn import Turn
from sms.outbox import SmsOutbox

_LISTED = 5  # appointments listed by MY (and numbered for CANCEL n)
_ANSWERS = ("yes", "no", "number")


async def handle(
    conn: Connection,
    outbox: SmsOutbox,
    redis: RedisClient,
    *,
    message_sid: str,
    from_phone: str,
    body: str,
    default_region: str = "KH",  # phones arrive E.164 already: only a registration's check reads it
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
    patient = await conn.fetchrow(
        "SELECT id, preferred_language FROM patients WHERE phone = $1 ORDER BY created_at, id LIMIT 1", from_phone
    )
    pending = await conversation.load(redis, from_phone)
    if patient is not None and isinstance(pending, AskRegister):
        await conversation.forget(redis, from_phone)  # registered meanwhile (by a CHW)
        pending = None
    if patient is not None:
        language = patient["preferred_language"]
    elif isinstance(pending, AskRegister):
        language = pending.language
    else:
        language = command.language or texts.language_for_phone(from_phone)
    turn = Turn(conn, from_phone, language, default_region)
    if patient is not None:
        turn = Turn(conn, from_phone, language, default_region, await _principal(conn, from_phone), patient["id"])
    reply = await _act(turn, command, body, pending)
    queued = await outbox.enqueue(
        conn,
        to=from_phone,
        template=reply.template,
        language=language,
        values=reply.values,
        key=f"in:{message_sid}",
        essential=True,
    )
    # Last, once every domain statement ran: a request run again after a lost race finds the
    # question it answers (sms.conversation).
    await conversation.settle(redis, from_phone, pending, reply)
    return queued


async def _act(turn: Turn, command: keywords.Command, body: str, pending: conversation.Ask | None) -> Reply:
    if command.action == "stop":
        await turn.conn.execute("INSERT INTO sms_opt_outs (phone) VALUES ($1) ON CONFLICT DO NOTHING", turn.phone)
        return Reply("sms_stopped")
    if command.action == "start":
        await turn.conn.execute("DELETE FROM sms_opt_outs WHERE phone = $1", turn.phone)
        return Reply("sms_started")
    if turn.patient_id is None:
        return await _unregistered(turn, command, body, pending)
    if pending is not None and command.action in _ANSWERS:
        answered = await _answer(turn, command, pending)
        if answered is not None:
            return answered
    if command.action == "book":
        return await book.start(turn)
    if command.action == "consent":
        return await consent.give(turn)
    if command.action == "withdraw":
        return await consent.ask_withdraw(turn)
    if command.action in ("my", "cancel", "move"):
        return await _appointments(turn, command)
    # HELP, REGISTER (already registered), text Spean does not understand, an answer nobody asked
    # for: the short help, and a question still open stays open.
    return Reply("sms_help", {}, conversation.KEEP)


async def _unregistered(turn: Turn, command: keywords.Command, body: str, pending: conversation.Ask | None) -> Reply:
    if isinstance(pending, AskRegister):
        return await register.answer(turn, pending, body, command.number)
    if command.action == "register":
        return register.start(turn)
    if command.action in ("help", "unknown", *_ANSWERS):
        return Reply("sms_help_new")
    return Reply("sms_unknown_number")  # a patient's keyword: nothing to act on yet


async def _answer(turn: Turn, command: keywords.Command, pending: conversation.Ask) -> Reply | None:
    """The answer to the open question, or None if this does not answer it (a YES to a list)."""
    yes = command.action == "yes"
    if command.action == "number":
        if isinstance(pending, AskNeed):
            return await book.choose_need(turn, pending, command.number)
        if isinstance(pending, AskSlot):
            return await book.choose_slot(turn, pending, command.number)
        return None
    if isinstance(pending, AskMove):
        return await move.answer(turn, pending, yes=yes)
    if isinstance(pending, AskBook):
        return await book.confirm(turn, pending, yes=yes)
    if isinstance(pending, AskWithdraw):
        return await consent.withdraw(turn, pending, yes=yes)
    return None


async def _appointments(turn: Turn, command: keywords.Command) -> Reply:
    principal, _ = turn.acting
    upcoming = await _upcoming(turn.conn, principal)
    if command.action == "my":
        if not upcoming:
            return Reply("sms_my_none")
        return Reply("sms_my_list", {"items": turn.numbered([_when(a) for a in upcoming])})
    number = command.number or 0
    if not 1 <= number <= len(upcoming):
        return Reply("sms_cancel_unknown", {"n": number})
    chosen = upcoming[number - 1]
    if command.action == "move":
        return await move.offer(turn, chosen)
    if await conversation.attempt(
        appointments.cancel(turn.conn, principal, chosen.id, reason="cancelled by SMS"), turn.conn
    ):
        return Reply("sms_cancel_refused")
    return Reply("sms_cancelled", {"when": _when(chosen)})


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
