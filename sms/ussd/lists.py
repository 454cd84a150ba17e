"""What the USSD screens show: their numbered lists (ITEMS) and their values (VALUES), read
through the same domain functions as the app, as the phone's login (channel `ussd`), so the app's
access rules and audit trail apply unchanged."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from domain import facilities, patients, practitioners
from domain.booking import appointments, offers
from domain.booking.availability import list_free_slots
from domain.booking.slots import Slot
from infra.db import Connection
from sms import texts
from sms.ussd import pin
from sms.ussd.context import (
    APPOINTMENTS_SHOWN,
    CONSULTATIONS_SHOWN,
    SEARCH_DAYS,
    SLOTS_SHOWN,
    Context,
    Goto,
    Outcome,
    active_network_consents,
    parse_slot,
    patient_name,
    when,
)
from sms.ussd.render import Line

# --- numbered lists ---------------------------------------------------------------------------


async def _patients(ctx: Context) -> list[tuple[Line, str]]:
    rows = await ctx.conn.fetch(
        """SELECT p.id, p.names->0->>'text' AS name FROM patient_accounts pa JOIN patients p ON p.id = pa.patient_id
           WHERE pa.user_id = $1 ORDER BY p.created_at, p.id LIMIT 9""",
        ctx.principal.user_id,
    )
    return [(Line(str(n), r["name"], dynamic=True, keep=12), str(r["id"])) for n, r in enumerate(rows, start=1)]


async def _needs(ctx: Context) -> list[tuple[Line, str]]:
    """The waiting referral first, then the specialties the patient's reference centres offer."""
    found: list[tuple[Line, str]] = []
    for n, need in enumerate(await offers.needs(ctx.conn, ctx.principal, ctx.patient_id), start=1):
        label = (
            texts.text(ctx.language, "ussd_referral_item", specialty=need.specialty)
            if need.referral
            else need.specialty
        )
        found.append((Line(str(n), label, dynamic=True), f"{need.specialty}|{need.centre_id or ''}"))
    return found


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
    need = offers.Need(specialty=specialty, centre_id=uuid.UUID(centre) if centre else None)
    slots = await offers.free_slots(ctx.conn, ctx.principal, ctx.patient_id, need, limit=SLOTS_SHOWN)
    return await _slot_lines(ctx, slots)


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
        (Line(str(n), patient_name(found[i]), dynamic=True, keep=12), str(i))
        for n, i in enumerate(ids, start=1)
        if i in found
    ]


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
        lines.append(
            (Line(str(len(lines) + 1), f"{start} {patient_name(patient)}", dynamic=True, keep=len(start)), str(a.id))
        )
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


async def _slot(ctx: Context) -> Values | Outcome:
    slot = parse_slot(ctx.session.choices["slot"])
    doctor = (await practitioners.get(ctx.conn, slot.practitioner_id)).name
    facility = (await facilities.get(ctx.conn, slot.facility_id)).name
    return {"doctor": doctor, "facility": facility}, {"when": when(slot.start, slot.timezone, ctx.language)}


async def _appointment(ctx: Context) -> Values | Outcome:
    a = await appointments.get(ctx.conn, ctx.principal, uuid.UUID(ctx.session.choices["appointment"]))
    doctor = (await practitioners.get(ctx.conn, a.practitioner_id)).name
    facility = (await facilities.get(ctx.conn, a.facility_id)).name
    return {"doctor": doctor, "facility": facility}, {"when": when(a.start, a.timezone, ctx.language)}


async def _consent(ctx: Context) -> Values | Outcome:
    given = bool(await active_network_consents(ctx))
    return {}, {"state": texts.text(ctx.language, "ussd_consent_given" if given else "ussd_consent_not_given")}


async def _pin_required(ctx: Context) -> Values | Outcome:
    if not await pin.is_set(ctx.conn, ctx.patient_id):
        return Goto("pin_new")
    return {}, {}


async def _patient(ctx: Context) -> Values | Outcome:
    return {"name": patient_name(await patients.get(ctx.conn, ctx.principal, ctx.patient_id))}, {}


VALUES: dict[str, Callable[[Context], Awaitable[Values | Outcome]]] = {
    "patient": _patient,
    "slot": _slot,
    "appointment": _appointment,
    "consent": _consent,
    "pin_required": _pin_required,
}
