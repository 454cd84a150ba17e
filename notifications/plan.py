"""From an outbox event to the messages people get: who, in which language and time zone, what.

Each message is one `notifications` row whose key is the event and the recipient, so planning an
event twice can never make a second message. Texts come from the sms/locales catalogues and carry
no health detail: a time, "news about a referral", "a result is ready", "join now" (the app shows
the rest after sign-in). Channels are settled at delivery (notifications.deliver): a device may
register later.

Who hears what (the README's table): patient and specialist of an appointment booked, moved or
cancelled; the health worker who booked it when it moves, is cancelled or its results are
written, and with the patient when the specialist calls; the patient alone for reminders; the
referring health worker (for the referring facility) and the patient when a referral is answered.
Each reads it in their language, with times on their facility's clock, and a non-urgent message
waits out their facility's quiet hours (notifications.quiet).
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
from notifications.quiet import QuietHours, hold
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
    quiet: QuietHours  # their facility's clock and nights
    user_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None
    phone: str | None = None


def _message(
    person: _Person,
    *,
    key: str,
    kind: str,
    body: str,
    data: dict[str, str],
    priority: Priority = "normal",
    due: dt.datetime | None = None,
    consultation_start: dt.datetime | None = None,
    appointment_id: uuid.UUID | None = None,
) -> Planned:
    """One message for one person, held through their quiet hours unless urgent."""
    now = dt.datetime.now(dt.UTC)
    goes = hold(person.quiet, due or now, urgent=priority != "normal", consultation_start=consultation_start)
    return Planned(
        key=key,
        kind=kind,
        priority=priority,
        language=person.language,
        title=text(person.language, "push_title"),
        body=body,
        data={**data, "kind": kind},
        channel="push" if priority == "silent" else person.channel,
        user_id=person.user_id,
        patient_id=person.patient_id,
        appointment_id=appointment_id,
        phone=person.phone,
        available_at=goes if (due is not None or goes > now) else None,  # None: the database's now()
    )


Known = dict[uuid.UUID, _Person]  # patients already read, by id


async def plan(
    conn: Connection,
    outbox_id: int,
    topic: str,
    payload: dict[str, Any],
    reminders_min: tuple[int, ...],
    known: Known | None = None,
) -> list[Planned]:
    """The messages one event makes; `known`: its batch's patients, read at once (`patients_of`)."""
    known = {} if known is None else known
    if topic.startswith("appointment."):
        return await _appointment(conn, outbox_id, topic.removeprefix("appointment."), payload, reminders_min, known)
    if topic in ("referral.outcome", "patient.referral_outcome"):
        return await _referral(conn, outbox_id, topic, payload, known)
    if topic == "record.result_ready":
        return await _result_ready(conn, outbox_id, payload, known)
    if topic == "record.report_ready":
        return await _report_ready(conn, outbox_id, payload)
    return []  # events nobody is told about (referral.requested is seen on the worklist)


async def patients_of(conn: Connection, payloads: list[dict[str, Any]]) -> Known:
    """The patients a batch of events names, read in one query: one each was most of planning's
    round trips (and of its CPU) once events come by the hundred."""
    ids = list({uuid.UUID(p["patient_id"]) for p in payloads if p.get("patient_id")})
    if not ids:
        return {}
    rows = await conn.fetch(f"{_PATIENT} WHERE p.id = ANY($1::uuid[])", ids)
    return {r["id"]: _patient_from(r) for r in rows}


async def _appointment(
    conn: Connection,
    outbox_id: int,
    action: str,
    payload: dict[str, Any],
    reminders_min: tuple[int, ...],
    known: Known,
) -> list[Planned]:
    appointment_id = uuid.UUID(payload["appointment_id"])
    if action in ("reschedule", "cancel", "no_show", "complete"):
        # Reminders of the old time vanish; a reschedule plans new ones below.
        await conn.execute(
            """UPDATE notifications SET state = 'cancelled', updated_at = now(), claimed_by = NULL, claimed_until = NULL
                WHERE appointment_id = $1 AND state = 'pending' AND kind LIKE 'reminder%'""",
            appointment_id,
        )
    row = await _appointment_row(conn, appointment_id)
    if row is None:
        return []
    start: dt.datetime = dt.datetime.fromisoformat(payload["start"])
    patient = await _patient(conn, uuid.UUID(payload["patient_id"]), known)
    specialist = await _staff(conn, row["specialist"], [row["facility_id"]])
    booker = await _booking_worker(conn, row)
    base = {"appointment_id": str(appointment_id), "start": payload["start"]}
    out: list[Planned] = []

    def add(
        person: _Person | None,
        kind: str,
        message: str,
        priority: Priority = "normal",
        due: dt.datetime | None = None,
    ) -> None:
        if person is None:
            return
        # A silent push (no message) is data only: it has no text to look up.
        when = _when(start, person.quiet.timezone, person.language) if message else ""
        out.append(
            _message(
                person,
                key=f"{outbox_id}:{kind}:{person.tag}",
                kind=kind,
                body=text(person.language, message, when=when) if message else "",
                data=base,
                priority=priority,
                due=due,
                consultation_start=start,
                appointment_id=appointment_id,
            )
        )

    messages = {"book": "booked", "reschedule": "moved", "cancel": "cancelled"}
    if action in messages:
        add(patient, f"appointment_{messages[action]}", f"{messages[action]}_patient")
        add(specialist, f"appointment_{messages[action]}", f"{messages[action]}_staff")
    if action in ("reschedule", "cancel"):  # the health worker who booked it brings the patient
        add(booker, f"appointment_{messages[action]}", f"{messages[action]}_staff")
    if action in ("book", "reschedule"):
        now = dt.datetime.now(dt.UTC)
        for minutes in reminders_min:
            due = start - dt.timedelta(minutes=minutes)
            if due > now:
                add(patient, f"reminder_{minutes}m", "reminder", due=due)
    if action == "start_call":  # admitted from the waiting room
        add(patient, "call_ready", "call_ready", "high")
        add(booker, "call_ready", "call_ready", "high")
    if action == "check_in":  # the waiting room changed: the specialist's app syncs, silently
        add(specialist, "sync", "", "silent")
    return out


async def _appointment_row(conn: Connection, appointment_id: uuid.UUID) -> Any:
    return await conn.fetchrow(
        """SELECT a.facility_id, a.booked_by, pr.user_id AS specialist, p.home_facility_id
             FROM appointments a JOIN practitioners pr ON pr.id = a.practitioner_id
             JOIN patients p ON p.id = a.patient_id
            WHERE a.id = $1""",
        appointment_id,
    )


async def _booking_worker(conn: Connection, appointment: Any) -> _Person | None:
    """The health worker who booked the appointment for the patient (on the clock of the patient's
    health post if they work there): not the specialist, nor a patient's own login (a patient who
    booked for themselves hears as the patient)."""
    booked_by = appointment["booked_by"]
    if booked_by == appointment["specialist"] or await _is_patient_login(conn, booked_by):
        return None
    return await _staff(conn, booked_by, [appointment["home_facility_id"], appointment["facility_id"]])


async def _referral(
    conn: Connection, outbox_id: int, topic: str, payload: dict[str, Any], known: Known
) -> list[Planned]:
    referral_id = payload["referral_id"]
    row = await conn.fetchrow(
        "SELECT patient_id, referred_by, from_facility_id FROM referrals WHERE id = $1", uuid.UUID(referral_id)
    )
    if row is None:
        return []
    # The referring facility hears through the health worker who referred; the patient directly.
    person = (
        await _patient(conn, row["patient_id"], known)
        if topic.startswith("patient.")
        else await _staff(conn, row["referred_by"], [row["from_facility_id"]])
    )
    if person is None:
        return []
    return [
        _message(
            person,
            key=f"{outbox_id}:referral_answered:{person.tag}",
            kind="referral_answered",
            body=text(person.language, "referral_answered"),
            data={"referral_id": referral_id},
        )
    ]


async def _result_ready(conn: Connection, outbox_id: int, payload: dict[str, Any], known: Known) -> list[Planned]:
    """A consultation's results are in the shared record: the patient (and the health worker who
    booked it) are told that much, never what they say: the app shows them after sign-in, USSD
    behind the patient's PIN. The same text goes by SMS, whatever the patient's detail opt-in."""
    patient = await _patient(conn, uuid.UUID(payload["patient_id"]), known)
    data = {"encounter_id": payload["encounter_id"]}
    appointment_id = uuid.UUID(payload["appointment_id"]) if payload.get("appointment_id") else None
    out = [
        _message(
            patient,
            key=f"{outbox_id}:result_ready:{patient.tag}",
            kind="result_ready",
            body=text(patient.language, "sms_result_ready"),
            data=data,
            appointment_id=appointment_id,
        )
    ]
    if appointment_id is not None:
        row = await _appointment_row(conn, appointment_id)
        booker = None if row is None else await _booking_worker(conn, row)
        if booker is not None:
            out.append(
                _message(
                    booker,
                    key=f"{outbox_id}:result_ready:{booker.tag}",
                    kind="result_ready",
                    body=text(booker.language, "result_ready_staff"),
                    data=data,
                    appointment_id=appointment_id,
                )
            )
    return out


async def _report_ready(conn: Connection, outbox_id: int, payload: dict[str, Any]) -> list[Planned]:
    """A consultation's PDF report is in the record: the referring health post hears it in the app
    (the health worker who referred the patient, on their post's clock, and the one who booked the
    consultation if someone else). The patient has their own SMS with the link (consult_reports.routes)."""
    appointment_id = uuid.UUID(payload["appointment_id"])
    row = await _appointment_row(conn, appointment_id)
    if row is None:
        return []
    referral = await conn.fetchrow(
        "SELECT referred_by, from_facility_id FROM referrals WHERE appointment_id = $1 LIMIT 1", appointment_id
    )
    people = [
        None if referral is None else await _staff(conn, referral["referred_by"], [referral["from_facility_id"]]),
        await _booking_worker(conn, row),
    ]
    data = {"entry_id": payload["entry_id"], "appointment_id": payload["appointment_id"]}
    out: list[Planned] = []
    for person in people:
        if person is None or any(p.user_id == person.user_id for p in out):
            continue
        out.append(
            _message(
                person,
                key=f"{outbox_id}:report_ready:{person.tag}",
                kind="report_ready",
                body=text(person.language, "report_ready_staff"),
                data=data,
                appointment_id=appointment_id,
            )
        )
    return out


_CLOCK = "f.timezone, f.quiet_start, f.quiet_end"
_PATIENT = f"""SELECT p.id, p.phone, p.preferred_language, p.preferred_channel, {_CLOCK}
                 FROM patients p JOIN facilities f ON f.id = p.home_facility_id"""


async def _patient(conn: Connection, patient_id: uuid.UUID, known: Known) -> _Person:
    person = known.get(patient_id)
    if person is None:
        row = await conn.fetchrow(f"{_PATIENT} WHERE p.id = $1", patient_id)
        assert row is not None  # the event names a patient that exists (foreign keys)
        person = known[patient_id] = _patient_from(row)
    return person


def _patient_from(row: Any) -> _Person:
    return _Person(
        tag=f"p:{row['id']}",
        language=row["preferred_language"],
        channel="push" if row["preferred_channel"] == "app" else "sms",
        quiet=_quiet(row),
        patient_id=row["id"],
        phone=row["phone"],
    )


async def _staff(conn: Connection, user_id: uuid.UUID, facilities: list[uuid.UUID]) -> _Person | None:
    """A health worker, on the clock of the first of `facilities` they work at (else the first)."""
    row = await conn.fetchrow(
        f"""SELECT u.phone, pr.languages,
                  (SELECT d.language FROM devices d WHERE d.user_id = u.id AND d.retired_at IS NULL
                     AND d.language IS NOT NULL ORDER BY d.updated_at DESC LIMIT 1) AS device_language,
                  {_CLOCK}
             FROM users u LEFT JOIN practitioners pr ON pr.user_id = u.id
             JOIN facilities f ON f.id = coalesce(
                 (SELECT m.facility_id FROM memberships m
                   WHERE m.user_id = u.id AND m.facility_id = ANY($2::uuid[])
                   ORDER BY array_position($2::uuid[], m.facility_id) LIMIT 1),
                 ($2::uuid[])[1])
            WHERE u.id = $1 AND u.disabled_at IS NULL""",
        user_id,
        facilities,
    )
    if row is None:
        return None
    spoken = [lang for lang in (row["languages"] or []) if lang in LANGUAGES]
    language = row["device_language"] or (spoken[0] if spoken else language_for_phone(row["phone"]))
    return _Person(
        tag=f"u:{user_id}", language=language, channel="push", quiet=_quiet(row), user_id=user_id, phone=row["phone"]
    )


def _quiet(row: Any) -> QuietHours:
    return QuietHours(timezone=row["timezone"], start=row["quiet_start"], end=row["quiet_end"])


async def _is_patient_login(conn: Connection, user_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM patient_accounts WHERE user_id = $1)", user_id))


def _when(start: dt.datetime, timezone: str, language: str) -> str:
    """The consultation's time on the reader's facility's clock, written the reader's way."""
    local = start.astimezone(ZoneInfo(timezone))
    return f"{format_date(local, 'medium', locale=language)} {format_time(local, 'short', locale=language)}"
