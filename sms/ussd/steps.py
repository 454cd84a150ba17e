"""What the USSD screens load and do, through the same domain functions as the app.

Loaders give a screen its values (VALUES) or its numbered list (ITEMS); answers handle a free
answer (ANSWERS); actions end the session with their outcome (ACTIONS). Each runs as the phone's
patient login (channel `ussd`), so the app's access rules and audit trail apply unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, cast
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from domain import facilities, patients, practitioners
from domain.audit import trail
from domain.booking import appointments
from domain.booking.availability import list_free_slots
from domain.booking.model import Mode
from domain.booking.slots import Slot
from domain.consent import service as consent
from domain.errors import InvalidInput
from domain.principal import Principal
from infra.db import Connection
from sms import texts
from sms.ussd import pin
from sms.ussd.render import Line
from sms.ussd.session import Session

SLOTS_SHOWN = 5
SEARCH_DAYS = 14
APPOINTMENTS_SHOWN = 5
CONSULTATIONS_SHOWN = 20  # read before filtering to the post's own patients


@dataclass
class Context:
    conn: Connection
    principal: Principal
    session: Session
    default_region: str

    @property
    def patient_id(self) -> uuid.UUID:
        assert self.session.patient_id is not None
        return self.session.patient_id

    @property
    def language(self) -> str:
        return self.session.language


@dataclass(frozen=True)
class Goto:
    screen: str


@dataclass(frozen=True)
class End:
    message: str  # catalogue id
    values: dict[str, str]
    fixed: dict[str, str]


@dataclass(frozen=True)
class Again:
    """Ask the same screen again with a notice (a wrong PIN, two PINs that differ)."""

    notice: str


Outcome = Goto | End | Again


def end(message: str, fixed: dict[str, str] | None = None, **values: str) -> End:
    return End(message, values, fixed or {})


def when(instant: datetime, timezone: str, language: str) -> str:
    """A slot's start on the facility's clock: weekday, day/month and time, in the language."""
    return format_datetime(instant, "EEE dd/MM HH:mm", tzinfo=ZoneInfo(timezone), locale=language)


# --- numbered lists ---------------------------------------------------------------------------


async def _patients(ctx: Context) -> list[tuple[Line, str]]:
    rows = await ctx.conn.fetch(
        """SELECT p.id, p.names->0->>'text' AS name FROM patient_accounts pa JOIN patients p ON p.id = pa.patient_id
           WHERE pa.user_id = $1 ORDER BY p.created_at, p.id LIMIT 9""",
        ctx.principal.user_id,
    )
    return [(Line(str(n), r["name"], dynamic=True, keep=12), str(r["id"])) for n, r in enumerate(rows, start=1)]


async def _centres(conn: Connection, home: uuid.UUID) -> list[uuid.UUID | None]:
    """The reference centres the patient's health post refers to (any, if it has no links yet)."""
    linked = await conn.fetch("SELECT to_facility_id FROM referral_links WHERE from_facility_id = $1", home)
    return [r["to_facility_id"] for r in linked] or [None]


async def _needs(ctx: Context) -> list[tuple[Line, str]]:
    """The waiting referral first, then the specialties the patient's reference centres offer."""
    patient = await patients.get(ctx.conn, ctx.principal, ctx.patient_id)
    referrals = await ctx.conn.fetch(
        """SELECT to_facility_id, specialty FROM referrals
           WHERE patient_id = $1 AND status IN ('requested', 'accepted') AND appointment_id IS NULL
           ORDER BY urgency_rank, created_at LIMIT 1""",
        ctx.patient_id,
    )
    centres = await _centres(ctx.conn, patient.home_facility_id)
    specialties = await ctx.conn.fetch(
        """SELECT DISTINCT unnest(p.specialties) AS specialty FROM practitioners p
           JOIN availability_rules r ON r.practitioner_id = p.id
           JOIN facilities f ON f.id = r.facility_id AND f.kind = 'reference_centre'
           WHERE ($1::uuid[] IS NULL OR r.facility_id = ANY($1)) ORDER BY 1 LIMIT 8""",
        None if centres == [None] else centres,
    )
    found: list[tuple[Line, str]] = []
    for r in referrals:
        label = texts.text(ctx.language, "ussd_referral_item", specialty=r["specialty"])
        found.append((Line("", label, dynamic=True), f"{r['specialty']}|{r['to_facility_id']}"))
    found += [(Line("", r["specialty"], dynamic=True), f"{r['specialty']}|") for r in specialties]
    return [(Line(str(n), line.label, dynamic=True), value) for n, (line, value) in enumerate(found, start=1)]


async def _doctor_names(conn: Connection, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Practitioners' names (public, like the app's practitioner directory), in one query."""
    rows = await conn.fetch("SELECT id, name FROM practitioners WHERE id = ANY($1)", list(ids))
    return {r["id"]: r["name"] for r in rows}


async def _slot_lines(ctx: Context, slots: list[Slot]) -> list[tuple[Line, str]]:
    names = await _doctor_names(ctx.conn, {s.practitioner_id for s in slots})
    lines = []
    for n, s in enumerate(slots, start=1):
        start = when(s.start, s.timezone, ctx.language)
        lines.append(
            (
                Line(str(n), f"{start} {names[s.practitioner_id]}", dynamic=True, keep=len(start)),
                f"{s.practitioner_id}|{s.start.isoformat()}|{s.facility_id}|{s.timezone}|{','.join(s.modes)}",
            )
        )
    return lines


async def _free_slots(ctx: Context) -> list[tuple[Line, str]]:
    specialty, _, centre = ctx.session.choices["need"].partition("|")
    if centre:
        centres: list[uuid.UUID | None] = [uuid.UUID(centre)]
    else:
        home = (await patients.get(ctx.conn, ctx.principal, ctx.patient_id)).home_facility_id
        centres = await _centres(ctx.conn, home)
    today = datetime.now(UTC).date()
    slots: list[Slot] = []
    for facility_id in centres:
        slots += await list_free_slots(
            ctx.conn,
            first_day=today,
            last_day=today + timedelta(days=SEARCH_DAYS),
            specialty=specialty,
            facility_id=facility_id,
        )
    slots.sort(key=lambda s: (s.start, str(s.practitioner_id)))
    return await _slot_lines(ctx, slots[:SLOTS_SHOWN])


async def _appointments(ctx: Context) -> list[tuple[Line, str]]:
    found = await appointments.search(
        ctx.conn,
        ctx.principal,
        appointments.AppointmentQuery(
            patient_id=ctx.patient_id, status="booked", start_from=datetime.now(UTC), limit=APPOINTMENTS_SHOWN
        ),
    )
    names = await _doctor_names(ctx.conn, {a.practitioner_id for a in found})
    lines = []
    for n, a in enumerate(found, start=1):
        start = when(a.start, a.timezone, ctx.language)
        lines.append((Line(str(n), f"{start} {names[a.practitioner_id]}", dynamic=True, keep=len(start)), str(a.id)))
    return lines


async def _move_slots(ctx: Context) -> list[tuple[Line, str]]:
    current = await appointments.get(ctx.conn, ctx.principal, uuid.UUID(ctx.session.choices["appointment"]))
    today = datetime.now(UTC).date()
    slots = await list_free_slots(
        ctx.conn,
        first_day=today,
        last_day=today + timedelta(days=SEARCH_DAYS),
        practitioner_id=current.practitioner_id,
        facility_id=current.facility_id,
    )
    return await _slot_lines(ctx, [s for s in slots if s.start != current.start][:SLOTS_SHOWN])


async def _matches(ctx: Context) -> list[tuple[Line, str]]:
    ids = [uuid.UUID(i) for i in ctx.session.choices["matches"].split(",")]
    found = await patients.load_many(ctx.conn, ids)
    return [
        (Line(str(n), _name(found[i]), dynamic=True, keep=12), str(i)) for n, i in enumerate(ids, start=1) if i in found
    ]


def _name(patient: patients.Patient) -> str:
    return patient.names[0].text if patient.names else "?"


async def _post_consultations(ctx: Context) -> list[tuple[Line, str]]:
    """Today's and tomorrow's booked consultations of the patients of the CHW's post, by the
    post's calendar."""
    posts = sorted(ctx.principal.facilities_with("chw"))
    zone = ZoneInfo((await facilities.get(ctx.conn, posts[0])).timezone)
    today = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    found = await appointments.search(
        ctx.conn,
        ctx.principal,
        appointments.AppointmentQuery(
            status="booked", start_from=today, start_to=today + timedelta(days=2), limit=CONSULTATIONS_SHOWN
        ),
    )
    people = await patients.load_many(ctx.conn, [a.patient_id for a in found])
    lines: list[tuple[Line, str]] = []
    for a in found:
        patient = people.get(a.patient_id)
        if patient is None or patient.home_facility_id not in posts:
            continue  # visible for another reason (their own login's patients): not this post's
        start = when(a.start, a.timezone, ctx.language)
        lines.append((Line(str(len(lines) + 1), f"{start} {_name(patient)}", dynamic=True, keep=len(start)), str(a.id)))
    return lines


ITEMS: dict[str, Callable[[Context], Awaitable[list[tuple[Line, str]]]]] = {
    "matches": _matches,
    "post_consultations": _post_consultations,
    "patients": _patients,
    "needs": _needs,
    "free_slots": _free_slots,
    "appointments": _appointments,
    "move_slots": _move_slots,
}

# --- a screen's values: (shortenable names, fixed values) --------------------------------------

Values = tuple[dict[str, str], dict[str, str]]


class _Chosen(NamedTuple):
    practitioner_id: uuid.UUID
    start: datetime
    facility_id: uuid.UUID
    timezone: str
    modes: tuple[str, ...]


def _parse_slot(value: str) -> _Chosen:
    practitioner_id, start, facility_id, timezone, modes = value.split("|")
    return _Chosen(
        uuid.UUID(practitioner_id),
        datetime.fromisoformat(start),
        uuid.UUID(facility_id),
        timezone,
        tuple(modes.split(",")),
    )


async def _slot(ctx: Context) -> Values | Outcome:
    slot = _parse_slot(ctx.session.choices["slot"])
    doctor = (await practitioners.get(ctx.conn, slot.practitioner_id)).name
    facility = (await facilities.get(ctx.conn, slot.facility_id)).name
    return {"doctor": doctor, "facility": facility}, {"when": when(slot.start, slot.timezone, ctx.language)}


async def _appointment(ctx: Context) -> Values | Outcome:
    a = await appointments.get(ctx.conn, ctx.principal, uuid.UUID(ctx.session.choices["appointment"]))
    doctor = (await practitioners.get(ctx.conn, a.practitioner_id)).name
    facility = (await facilities.get(ctx.conn, a.facility_id)).name
    return {"doctor": doctor, "facility": facility}, {"when": when(a.start, a.timezone, ctx.language)}


async def _active_network_consents(ctx: Context) -> list[consent.Consent]:
    now = datetime.now(UTC)
    return [
        c
        for c in await consent.list_for_patient(ctx.conn, ctx.principal, ctx.patient_id)
        if c.scope == "network" and c.revoked_at is None and (c.expires_at is None or c.expires_at > now)
    ]


async def _consent(ctx: Context) -> Values | Outcome:
    given = bool(await _active_network_consents(ctx))
    return {}, {"state": texts.text(ctx.language, "ussd_consent_given" if given else "ussd_consent_not_given")}


async def _pin_required(ctx: Context) -> Values | Outcome:
    if not await pin.is_set(ctx.conn, ctx.patient_id):
        return Goto("pin_new")
    return {}, {}


async def _patient(ctx: Context) -> Values | Outcome:
    return {"name": _name(await patients.get(ctx.conn, ctx.principal, ctx.patient_id))}, {}


VALUES: dict[str, Callable[[Context], Awaitable[Values | Outcome]]] = {
    "patient": _patient,
    "slot": _slot,
    "appointment": _appointment,
    "consent": _consent,
    "pin_required": _pin_required,
}

# --- free answers -------------------------------------------------------------------------------


async def _results(ctx: Context) -> End:
    """Only that results are ready (how many): no result detail on a shared, unencrypted channel."""
    count = await ctx.conn.fetchval(
        """SELECT count(*) FROM record_entries WHERE patient_id = $1 AND kind = 'observation'
             AND status = 'current' AND effective_at > now() - interval '90 days'""",
        ctx.patient_id,
    )
    await trail.record(
        ctx.conn,
        ctx.principal,
        action="search",
        resource_type="Observation",
        resource_id=None,
        patient_ids=[ctx.patient_id],
    )
    if not count:
        return end("ussd_results_none")
    return end("ussd_results_ready", {"count": str(count)})


async def _pin_enter(ctx: Context, answer: str) -> Outcome:
    result = await pin.check(ctx.conn, ctx.patient_id, answer) if pin.well_formed(answer) else pin.Check.WRONG
    if result is pin.Check.OK:
        return await _results(ctx)
    if result is pin.Check.LOCKED:
        return end("ussd_pin_locked")
    if result is pin.Check.NOT_SET:
        return Goto("pin_new")
    return Again("ussd_pin_wrong")


async def _pin_new(ctx: Context, answer: str) -> Outcome:
    if not pin.well_formed(answer):
        return Again("ussd_pin_format")
    ctx.session.choices["new_pin"] = answer
    return Goto("pin_repeat")


async def _pin_repeat(ctx: Context, answer: str) -> Outcome:
    first = ctx.session.choices.pop("new_pin", None)
    if first is None:
        return Goto("pin_new")
    if answer != first:
        return end("ussd_pin_mismatch")
    await pin.set_pin(ctx.conn, ctx.patient_id, answer)
    return end("ussd_pin_saved")


async def _chw_find(ctx: Context, answer: str) -> Outcome:
    """A patient of the CHW's post by phone number, else by an identifier's value."""
    posts = ctx.principal.facilities_with("chw")
    queries = [patients.PatientQuery(identifier=answer, limit=9)]
    if answer.lstrip("+").isdigit() and len(answer) >= 8:
        queries.insert(0, patients.PatientQuery(phone=answer, limit=9))
    for query in queries:
        try:
            found = await patients.search(ctx.conn, ctx.principal, query, default_region=ctx.default_region)
        except InvalidInput:
            continue
        ours = [p for p in found if p.home_facility_id in posts]
        if len(ours) == 1:
            ctx.session.patient_id = ours[0].id
            return Goto("chw_patient")
        if ours:
            ctx.session.choices["matches"] = ",".join(str(p.id) for p in ours)
            return Goto("chw_matches")
    return Again("ussd_chw_no_match")


ANSWERS: dict[str, Callable[[Context, str], Awaitable[Outcome]]] = {
    "chw_find": _chw_find,
    "pin_enter": _pin_enter,
    "pin_new": _pin_new,
    "pin_repeat": _pin_repeat,
}

# --- actions: they end the session ----------------------------------------------------------


async def _book(ctx: Context, _value: str) -> End:
    slot = _parse_slot(ctx.session.choices["slot"])
    # A feature phone takes the consultation as a call: audio when the slot offers it.
    mode: Mode = "audio" if "audio" in slot.modes or not slot.modes else cast("Mode", slot.modes[0])
    booked = await appointments.book(
        ctx.conn,
        ctx.principal,
        patient_id=ctx.patient_id,
        practitioner_id=slot.practitioner_id,
        start=slot.start,
        mode=mode,
    )
    facility = (await facilities.get(ctx.conn, booked.facility_id)).name
    return end("ussd_booked", {"when": when(booked.start, slot.timezone, ctx.language)}, facility=facility)


async def _cancel(ctx: Context, _value: str) -> End:
    await appointments.cancel(ctx.conn, ctx.principal, uuid.UUID(ctx.session.choices["appointment"]), reason="ussd")
    return end("ussd_cancelled")


async def _move(ctx: Context, _value: str) -> End:
    slot = _parse_slot(ctx.session.choices["slot"])
    moved = await appointments.reschedule(
        ctx.conn, ctx.principal, uuid.UUID(ctx.session.choices["appointment"]), start=slot.start
    )
    return end("ussd_moved", {"when": when(moved.start, slot.timezone, ctx.language)})


async def _consent_give(ctx: Context, _value: str) -> End:
    if not await _active_network_consents(ctx):
        await consent.grant(ctx.conn, ctx.principal, ctx.patient_id, consent.ConsentIn(scope="network"))
    return end("ussd_consent_done_give")


async def _consent_withdraw(ctx: Context, _value: str) -> End:
    for given in await _active_network_consents(ctx):
        await consent.revoke(ctx.conn, ctx.principal, given.id, "withdrawn by USSD")
    return end("ussd_consent_done_withdraw")


async def _language(ctx: Context, value: str) -> End:
    await patients.update(
        ctx.conn,
        ctx.principal,
        ctx.patient_id,
        patients.PatientPatch(preferred_language=cast("patients.Language", value)),
        default_region=ctx.default_region,
    )
    ctx.session.language = value
    return end("ussd_language_done")


ACTIONS: dict[str, Callable[[Context, str], Awaitable[End]]] = {
    "book": _book,
    "cancel": _cancel,
    "move": _move,
    "consent_give": _consent_give,
    "consent_withdraw": _consent_withdraw,
    "language": _language,
}
