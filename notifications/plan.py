"""From an outbox event to the messages people get: who, in which language and time zone, what.

Each message is one `notifications` row whose key is the event and the recipient, so planning an
event twice can never make a second message. Texts come from the sms/locales catalogues and carry
no health detail: a time, "news about a referral", "join now" (the app shows the rest after
sign-in). Channels are settled at delivery (notifications.deliver): a device may register later.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from babel.dates import format_date, format_time

from infra.db import Connection
from notifications.push import Priority
from sms.texts import LANGUAGES, language_for_phone, text

CALL_TTL_S = 60  # "join now" is worthless a minute later


class Planned(msgspec.Struct, kw_only=True):
    key: str
    kind: str
    priority: Priority
    language: str
    title: str
    body: str
    data: dict[str, str]
    channel: str
    user_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None
    appointment_id: uuid.UUID | None = None
    phone: str | None = None
    available_at: dt.datetime | None = None


class _Person(msgspec.Struct, kw_only=True):
    tag: str  # p:<patient> or u:<user>, part of the key
    language: str
    channel: str
    user_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None
    phone: str | None = None


async def plan(
    conn: Connection, outbox_id: int, topic: str, payload: dict[str, Any], reminders_min: tuple[int, ...]
) -> list[Planned]:
    if topic.startswith("appointment."):
        return await _appointment(conn, outbox_id, topic.removeprefix("appointment."), payload, reminders_min)
    if topic in ("referral.outcome", "patient.referral_outcome"):
        return await _referral(conn, outbox_id, topic, payload)
    return []  # events nobody is told about (referral.requested is seen on the worklist)


async def _appointment(
    conn: Connection, outbox_id: int, action: str, payload: dict[str, Any], reminders_min: tuple[int, ...]
) -> list[Planned]:
    appointment_id = uuid.UUID(payload["appointment_id"])
    if action in ("reschedule", "cancel", "no_show", "complete"):
        # Reminders of the old time vanish; a reschedule plans new ones below.
        await conn.execute(
            """UPDATE notifications SET state = 'cancelled', updated_at = now(), claimed_by = NULL, claimed_until = NULL
                WHERE appointment_id = $1 AND state = 'pending' AND kind LIKE 'reminder%'""",
            appointment_id,
        )
    row = await conn.fetchrow(
        """SELECT a.start_at, a.booked_by, f.timezone, pr.user_id AS specialist
             FROM appointments a JOIN facilities f ON f.id = a.facility_id
             JOIN practitioners pr ON pr.id = a.practitioner_id
            WHERE a.id = $1""",
        appointment_id,
    )
    if row is None:
        return []
    start: dt.datetime = dt.datetime.fromisoformat(payload["start"])
    zone = ZoneInfo(row["timezone"])
    patient = await _patient(conn, uuid.UUID(payload["patient_id"]))
    specialist = await _staff(conn, row["specialist"])
    base = {"appointment_id": str(appointment_id), "start": payload["start"]}
    out: list[Planned] = []

    def add(person: _Person | None, kind: str, message: str, priority: Priority = "normal", **extra: Any) -> None:
        if person is None:
            return
        when = _when(start, zone, person.language)
        out.append(
            Planned(
                key=f"{outbox_id}:{kind}:{person.tag}",
                kind=kind,
                priority=priority,
                language=person.language,
                title=text(person.language, "push_title"),
                body=text(person.language, message, when=when) if message else "",
                data={**base, "kind": kind},
                channel="push" if priority == "silent" else person.channel,
                user_id=person.user_id,
                patient_id=person.patient_id,
                appointment_id=appointment_id,
                phone=person.phone,
                **extra,
            )
        )

    messages = {"book": "booked", "reschedule": "moved", "cancel": "cancelled"}
    if action in messages:
        add(patient, f"appointment_{messages[action]}", f"{messages[action]}_patient")
        add(specialist, f"appointment_{messages[action]}", f"{messages[action]}_staff")
    if action in ("book", "reschedule"):
        now = dt.datetime.now(dt.UTC)
        for minutes in reminders_min:
            due = start - dt.timedelta(minutes=minutes)
            if due > now:
                add(patient, f"reminder_{minutes}m", "reminder", available_at=due)
    if action == "start_call":  # admitted from the waiting room
        add(patient, "call_ready", "call_ready", "high")
        if row["booked_by"] != row["specialist"] and not await _is_patient_login(conn, row["booked_by"]):
            add(await _staff(conn, row["booked_by"]), "call_ready", "call_ready", "high")
    if action == "check_in":  # the waiting room changed: the specialist's app syncs, silently
        add(specialist, "sync", "", "silent")
    return out


async def _referral(conn: Connection, outbox_id: int, topic: str, payload: dict[str, Any]) -> list[Planned]:
    referral_id = payload["referral_id"]
    row = await conn.fetchrow("SELECT patient_id, referred_by FROM referrals WHERE id = $1", uuid.UUID(referral_id))
    if row is None:
        return []
    # The referring facility hears through the health worker who referred; the patient directly.
    person = (
        await _patient(conn, row["patient_id"])
        if topic.startswith("patient.")
        else await _staff(conn, row["referred_by"])
    )
    if person is None:
        return []
    return [
        Planned(
            key=f"{outbox_id}:referral_answered:{person.tag}",
            kind="referral_answered",
            priority="normal",
            language=person.language,
            title=text(person.language, "push_title"),
            body=text(person.language, "referral_answered"),
            data={"referral_id": referral_id, "kind": "referral_answered"},
            channel=person.channel,
            user_id=person.user_id,
            patient_id=person.patient_id,
            phone=person.phone,
        )
    ]


async def _patient(conn: Connection, patient_id: uuid.UUID) -> _Person:
    row = await conn.fetchrow(
        "SELECT phone, preferred_language, preferred_channel FROM patients WHERE id = $1", patient_id
    )
    assert row is not None  # the event names a patient that exists (foreign keys)
    return _Person(
        tag=f"p:{patient_id}",
        language=row["preferred_language"],
        channel="push" if row["preferred_channel"] == "app" else "sms",
        patient_id=patient_id,
        phone=row["phone"],
    )


async def _staff(conn: Connection, user_id: uuid.UUID) -> _Person | None:
    row = await conn.fetchrow(
        """SELECT u.phone, pr.languages,
                  (SELECT d.language FROM devices d WHERE d.user_id = u.id AND d.retired_at IS NULL
                     AND d.language IS NOT NULL ORDER BY d.updated_at DESC LIMIT 1) AS device_language
             FROM users u LEFT JOIN practitioners pr ON pr.user_id = u.id
            WHERE u.id = $1 AND u.disabled_at IS NULL""",
        user_id,
    )
    if row is None:
        return None
    spoken = [lang for lang in (row["languages"] or []) if lang in LANGUAGES]
    language = row["device_language"] or (spoken[0] if spoken else language_for_phone(row["phone"]))
    return _Person(tag=f"u:{user_id}", language=language, channel="push", user_id=user_id, phone=row["phone"])


async def _is_patient_login(conn: Connection, user_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM patient_accounts WHERE user_id = $1)", user_id))


def _when(start: dt.datetime, zone: ZoneInfo, language: str) -> str:
    """The consultation's time on the facility's clock, written the reader's way."""
    local = start.astimezone(zone)
    return f"{format_date(local, 'medium', locale=language)} {format_time(local, 'short', locale=language)}"
