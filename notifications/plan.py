"""From outbox events to the messages people get: who, in which language and time zone, what.

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

A batch of events is planned together, in two reads whatever its size (`plan_events`): what the
events are about (appointments, referrals), then everyone they tell (patients, health workers).
Read event by event, four round trips each, planning cost as much CPU as the booking it followed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from babel import Locale
from babel.dates import format_date, format_time

from infra.db import Connection
from notifications.push import Priority
from notifications.quiet import QuietHours, hold
from sms.texts import LANGUAGES, language_for_phone, text

CALL_TTL_S = 60  # "join now" is worthless a minute later

# Actions after which the reminders of the appointment's old time must not go.
_ENDS_REMINDERS = ("reschedule", "cancel", "no_show", "complete")


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


class Event(msgspec.Struct, frozen=True):
    """An outbox row: its id, topic and payload."""

    id: int
    topic: str
    payload: dict[str, Any]


class _Person(msgspec.Struct, kw_only=True):
    tag: str  # p:<patient> or u:<user>, part of the key
    language: str
    channel: str
    quiet: QuietHours  # their facility's clock and nights
    user_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None
    phone: str | None = None


_Ask = tuple[uuid.UUID, uuid.UUID, uuid.UUID | None]  # a health worker, on the clock of the first facility they work at


@dataclass
class _Batch:
    """What a batch of events is about and who it tells, read at once (`_read_facts`, `_read_people`)."""

    appointments: dict[uuid.UUID, Any] = field(default_factory=dict)
    referrals: dict[uuid.UUID, Any] = field(default_factory=dict)
    referral_of_appointment: dict[uuid.UUID, Any] = field(default_factory=dict)
    patients: dict[uuid.UUID, _Person] = field(default_factory=dict)
    staff: dict[_Ask, _Person | None] = field(default_factory=dict)


async def plan(
    conn: Connection, outbox_id: int, topic: str, payload: dict[str, Any], reminders_min: tuple[int, ...]
) -> list[Planned]:
    """The messages one event makes."""
    return [p for _, p in await plan_events(conn, [Event(outbox_id, topic, payload)], reminders_min)]


async def plan_events(
    conn: Connection, events: Sequence[Event], reminders_min: tuple[int, ...]
) -> list[tuple[int, Planned]]:
    """The messages a batch of events makes, (outbox id, message), in the events' order.

    As if planned one after another: an event that moves, cancels or closes an appointment ends
    the pending reminders of its old time, those planned before, in this batch too."""
    batch = _Batch()
    await _read_facts(conn, events, batch)
    await _read_people(conn, events, batch)
    now = dt.datetime.now(dt.UTC)
    planned = [(e.id, p) for e in events for p in _plan_one(e, batch, reminders_min, now)]
    last_end: dict[str, int] = {}  # appointment id → the last event in the batch that ends its reminders
    for e in events:
        if e.topic.removeprefix("appointment.") in _ENDS_REMINDERS:
            last_end[e.payload["appointment_id"]] = e.id
    if last_end:
        planned = [
            (outbox_id, p)
            for outbox_id, p in planned
            if not (p.kind.startswith("reminder") and outbox_id < last_end.get(str(p.appointment_id), 0))
        ]
    return planned


def _plan_one(e: Event, batch: _Batch, reminders_min: tuple[int, ...], now: dt.datetime) -> list[Planned]:
    if e.topic.startswith("appointment."):
        return _appointment(e, e.topic.removeprefix("appointment."), batch, reminders_min, now)
    if e.topic in ("referral.outcome", "patient.referral_outcome"):
        return _referral(e, batch, now)
    if e.topic == "record.result_ready":
        return _result_ready(e, batch, now)
    if e.topic == "record.report_ready":
        return _report_ready(e, batch, now)
    return []  # events nobody is told about (referral.requested is seen on the worklist)


# -- reading a batch ----------------------------------------------------------------------------


async def _read_facts(conn: Connection, events: Sequence[Event], batch: _Batch) -> None:
    """The batch's appointments and referrals, in one statement, which also ends the reminders of
    the appointments its events move, cancel or close (before the batch's own are written)."""
    ending: set[uuid.UUID] = set()
    appointments: set[uuid.UUID] = set()
    referrals: set[uuid.UUID] = set()
    reports: set[uuid.UUID] = set()  # appointments whose referral is looked for
    for e in events:
        if e.topic.startswith("appointment."):
            appointment_id = uuid.UUID(e.payload["appointment_id"])
            appointments.add(appointment_id)
            if e.topic.removeprefix("appointment.") in _ENDS_REMINDERS:
                ending.add(appointment_id)
        elif e.topic in ("referral.outcome", "patient.referral_outcome"):
            referrals.add(uuid.UUID(e.payload["referral_id"]))
        elif e.topic == "record.result_ready":
            if e.payload.get("appointment_id"):
                appointments.add(uuid.UUID(e.payload["appointment_id"]))
        elif e.topic == "record.report_ready":
            appointments.add(uuid.UUID(e.payload["appointment_id"]))
            reports.add(uuid.UUID(e.payload["appointment_id"]))
    if not (appointments or referrals):
        return
    rows = await conn.fetch(
        """WITH ended AS (
               UPDATE notifications SET state = 'cancelled', updated_at = now(), claimed_by = NULL, claimed_until = NULL
                WHERE appointment_id = ANY($1::uuid[]) AND state = 'pending' AND kind LIKE 'reminder%')
           SELECT 'a' AS what, a.id, a.facility_id, a.booked_by, pr.user_id AS specialist, p.home_facility_id,
                  EXISTS (SELECT FROM patient_accounts pa WHERE pa.user_id = a.booked_by) AS booked_by_patient,
                  NULL::uuid AS appointment_id, NULL::uuid AS patient_id, NULL::uuid AS referred_by,
                  NULL::uuid AS from_facility_id
             FROM appointments a JOIN practitioners pr ON pr.id = a.practitioner_id
             JOIN patients p ON p.id = a.patient_id
            WHERE a.id = ANY($2::uuid[])
           UNION ALL
           SELECT 'r', r.id, NULL, NULL, NULL, NULL, NULL, r.appointment_id, r.patient_id, r.referred_by,
                  r.from_facility_id
             FROM referrals r
            WHERE r.id = ANY($3::uuid[]) OR r.appointment_id = ANY($4::uuid[])""",
        list(ending),
        list(appointments),
        list(referrals),
        list(reports),
    )
    for r in rows:
        if r["what"] == "a":
            batch.appointments[r["id"]] = r
            continue
        if r["id"] in referrals:
            batch.referrals[r["id"]] = r
        if r["appointment_id"] in reports:
            batch.referral_of_appointment.setdefault(r["appointment_id"], r)


def _booker_ask(appointment: Any) -> _Ask | None:
    """The health worker who booked the appointment for the patient (on the clock of the patient's
    health post if they work there): not the specialist, nor a patient's own login (a patient who
    booked for themselves hears as the patient)."""
    booked_by = appointment["booked_by"]
    if booked_by == appointment["specialist"] or appointment["booked_by_patient"]:
        return None
    return (booked_by, appointment["home_facility_id"], appointment["facility_id"])


def _specialist_ask(appointment: Any) -> _Ask:
    return (appointment["specialist"], appointment["facility_id"], None)


def _referrer_ask(referral: Any) -> _Ask:
    return (referral["referred_by"], referral["from_facility_id"], None)


async def _read_people(conn: Connection, events: Sequence[Event], batch: _Batch) -> None:
    """Everyone the batch tells, in one statement: patients on their home facility's clock,
    health workers on that of the first facility of theirs that is in the matter."""
    patients: set[uuid.UUID] = set()
    asks: set[_Ask] = set()
    for e in events:
        topic, payload = e.topic, e.payload
        named = payload.get("appointment_id")
        appointment = batch.appointments.get(uuid.UUID(named)) if named else None
        if topic.startswith("appointment."):
            if appointment is None:
                continue
            patients.add(uuid.UUID(payload["patient_id"]))
            asks.add(_specialist_ask(appointment))
            if topic.removeprefix("appointment.") in ("reschedule", "cancel", "start_call"):
                booker = _booker_ask(appointment)
                if booker is not None:
                    asks.add(booker)
        elif topic in ("referral.outcome", "patient.referral_outcome"):
            referral = batch.referrals.get(uuid.UUID(payload["referral_id"]))
            if referral is not None:
                if topic.startswith("patient."):
                    patients.add(referral["patient_id"])
                else:
                    asks.add(_referrer_ask(referral))
        elif topic in ("record.result_ready", "record.report_ready"):
            if topic == "record.result_ready":
                patients.add(uuid.UUID(payload["patient_id"]))
            else:
                referral = batch.referral_of_appointment.get(uuid.UUID(payload["appointment_id"]))
                if referral is not None:
                    asks.add(_referrer_ask(referral))
            if appointment is not None and (booker := _booker_ask(appointment)) is not None:
                asks.add(booker)
    if not (patients or asks):
        return
    ordered = list(asks)
    rows = await conn.fetch(
        f"""SELECT NULL::bigint AS ask, p.id, p.phone, p.preferred_language, p.preferred_channel,
                   NULL::text[] AS languages, NULL::text AS device_language, {_CLOCK}
              FROM patients p JOIN facilities f ON f.id = p.home_facility_id
             WHERE p.id = ANY($1::uuid[])
            UNION ALL
            SELECT s.ask, u.id, u.phone, NULL, NULL, pr.languages,
                   (SELECT d.language FROM devices d WHERE d.user_id = u.id AND d.retired_at IS NULL
                       AND d.language IS NOT NULL ORDER BY d.updated_at DESC LIMIT 1),
                   {_CLOCK}
              FROM unnest($2::uuid[], $3::uuid[], $4::uuid[]) WITH ORDINALITY AS s (user_id, first, second, ask)
              JOIN users u ON u.id = s.user_id AND u.disabled_at IS NULL
              LEFT JOIN practitioners pr ON pr.user_id = u.id
              JOIN facilities f ON f.id = CASE
                  WHEN EXISTS (SELECT FROM memberships m WHERE m.user_id = u.id AND m.facility_id = s.first)
                  THEN s.first
                  WHEN EXISTS (SELECT FROM memberships m WHERE m.user_id = u.id AND m.facility_id = s.second)
                  THEN s.second
                  ELSE s.first END""",
        list(patients),
        [a[0] for a in ordered],
        [a[1] for a in ordered],
        [a[2] for a in ordered],
    )
    batch.staff = dict.fromkeys(ordered)  # a disabled login: nobody (None)
    for r in rows:
        if r["ask"] is None:
            batch.patients[r["id"]] = _patient_from(r)
        else:
            batch.staff[ordered[r["ask"] - 1]] = _staff_from(r)


_CLOCK = "f.timezone, f.quiet_start, f.quiet_end"


def _patient_from(row: Any) -> _Person:
    return _Person(
        tag=f"p:{row['id']}",
        language=row["preferred_language"],
        channel="push" if row["preferred_channel"] == "app" else "sms",
        quiet=_quiet(row),
        patient_id=row["id"],
        phone=row["phone"],
    )


def _staff_from(row: Any) -> _Person:
    spoken = [lang for lang in (row["languages"] or []) if lang in LANGUAGES]
    language = row["device_language"] or (spoken[0] if spoken else language_for_phone(row["phone"]))
    user_id = row["id"]
    return _Person(
        tag=f"u:{user_id}", language=language, channel="push", quiet=_quiet(row), user_id=user_id, phone=row["phone"]
    )


def _quiet(row: Any) -> QuietHours:
    return QuietHours(timezone=row["timezone"], start=row["quiet_start"], end=row["quiet_end"])


# -- planning each event ------------------------------------------------------------------------


def _message(
    person: _Person,
    *,
    key: str,
    kind: str,
    body: str,
    data: dict[str, str],
    now: dt.datetime,
    priority: Priority = "normal",
    due: dt.datetime | None = None,
    consultation_start: dt.datetime | None = None,
    appointment_id: uuid.UUID | None = None,
) -> Planned:
    """One message for one person, held through their quiet hours unless urgent."""
    goes = hold(person.quiet, due or now, urgent=priority != "normal", consultation_start=consultation_start)
    return Planned(
        key=key,
        kind=kind,
        priority=priority,
        language=person.language,
        title=_title(person.language),
        body=body,
        data={**data, "kind": kind},
        channel="push" if priority == "silent" else person.channel,
        user_id=person.user_id,
        patient_id=person.patient_id,
        appointment_id=appointment_id,
        phone=person.phone,
        available_at=goes if (due is not None or goes > now) else None,  # None: the database's now()
    )


def _appointment(
    e: Event, action: str, batch: _Batch, reminders_min: tuple[int, ...], now: dt.datetime
) -> list[Planned]:
    payload = e.payload
    appointment_id = uuid.UUID(payload["appointment_id"])
    row = batch.appointments.get(appointment_id)
    if row is None:
        return []
    start: dt.datetime = dt.datetime.fromisoformat(payload["start"])
    patient = batch.patients[uuid.UUID(payload["patient_id"])]  # it exists (foreign keys)
    specialist = batch.staff[_specialist_ask(row)]
    booker_ask = _booker_ask(row)
    booker = None if booker_ask is None else batch.staff.get(booker_ask)
    base = {"appointment_id": payload["appointment_id"], "start": payload["start"]}
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
                key=f"{e.id}:{kind}:{person.tag}",
                kind=kind,
                body=text(person.language, message, when=when) if message else "",
                data=base,
                now=now,
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


def _notice(
    person: _Person,
    e: Event,
    kind: str,
    template: str,
    data: dict[str, str],
    now: dt.datetime,
    appointment_id: uuid.UUID | None = None,
) -> Planned:
    """A plain notice of `e` to one person: keyed by the event, the kind and the person, its text
    the catalogue's `template` in their language."""
    return _message(
        person,
        key=f"{e.id}:{kind}:{person.tag}",
        kind=kind,
        body=text(person.language, template),
        data=data,
        now=now,
        appointment_id=appointment_id,
    )


def _referral(e: Event, batch: _Batch, now: dt.datetime) -> list[Planned]:
    referral_id = e.payload["referral_id"]
    row = batch.referrals.get(uuid.UUID(referral_id))
    if row is None:
        return []
    # The referring facility hears through the health worker who referred; the patient directly.
    person = batch.patients[row["patient_id"]] if e.topic.startswith("patient.") else batch.staff[_referrer_ask(row)]
    if person is None:
        return []
    return [_notice(person, e, "referral_answered", "referral_answered", {"referral_id": referral_id}, now)]


def _result_ready(e: Event, batch: _Batch, now: dt.datetime) -> list[Planned]:
    """A consultation's results are in the shared record: the patient (and the health worker who
    booked it) are told that much, never what they say: the app shows them after sign-in, USSD
    behind the patient's PIN. The same text goes by SMS, whatever the patient's detail opt-in."""
    payload = e.payload
    patient = batch.patients[uuid.UUID(payload["patient_id"])]
    data = {"encounter_id": payload["encounter_id"]}
    appointment_id = uuid.UUID(payload["appointment_id"]) if payload.get("appointment_id") else None
    out = [_notice(patient, e, "result_ready", "sms_result_ready", data, now, appointment_id)]
    row = None if appointment_id is None else batch.appointments.get(appointment_id)
    booker_ask = None if row is None else _booker_ask(row)
    booker = None if booker_ask is None else batch.staff[booker_ask]
    if booker is not None:
        out.append(_notice(booker, e, "result_ready", "result_ready_staff", data, now, appointment_id))
    return out


def _report_ready(e: Event, batch: _Batch, now: dt.datetime) -> list[Planned]:
    """A consultation's PDF report is in the record: the referring health post hears it in the app
    (the health worker who referred the patient, on their post's clock, and the one who booked the
    consultation if someone else). The patient has their own SMS with the link (consult_reports.routes)."""
    payload = e.payload
    appointment_id = uuid.UUID(payload["appointment_id"])
    row = batch.appointments.get(appointment_id)
    if row is None:
        return []
    referral = batch.referral_of_appointment.get(appointment_id)
    booker_ask = _booker_ask(row)
    people = [
        None if referral is None else batch.staff[_referrer_ask(referral)],
        None if booker_ask is None else batch.staff[booker_ask],
    ]
    data = {"entry_id": payload["entry_id"], "appointment_id": payload["appointment_id"]}
    out: list[Planned] = []
    for person in people:
        if person is None or any(p.user_id == person.user_id for p in out):
            continue
        out.append(_notice(person, e, "report_ready", "report_ready_staff", data, now, appointment_id))
    return out


@cache
def _title(language: str) -> str:
    return text(language, "push_title")


@cache
def _locale(language: str) -> Locale:
    return Locale.parse(language)


@lru_cache(maxsize=4096)  # an event's messages share one time, a batch's few zones and languages
def _when(start: dt.datetime, timezone: str, language: str) -> str:
    """The consultation's time on the reader's facility's clock, written the reader's way."""
    local = start.astimezone(ZoneInfo(timezone))
    locale = _locale(language)
    return f"{format_date(local, 'medium', locale=locale)} {format_time(local, 'short', locale=locale)}"
