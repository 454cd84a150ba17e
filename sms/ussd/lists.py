"""What the USSD screens show: their numbered lists (ITEMS) and their values (VALUES), read
through the same domain functions as the app, as the phone's login (channel `ussd`), so the app's
access rules and audit trail apply unchanged."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from domain import access, facilities, practitioners
from domain.booking import appointments
from domain.booking.availability import list_free_slots
from domain.booking.slots import Slot
from infra.db import Connection
from sms import texts
from sms.ussd import chw, pin
from sms.ussd.context import (
    APPOINTMENTS_SHOWN,
    SEARCH_DAYS,
    SLOTS_SHOWN,
    Context,
    Goto,
    Outcome,
    active_network_consents,
    parse_slot,
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


async def _centres(conn: Connection, home: uuid.UUID) -> list[uuid.UUID | None]:
    """The reference centres the patient's health post refers to (any, if it has no links yet)."""
    linked = await conn.fetch("SELECT to_facility_id FROM referral_links WHERE from_facility_id = $1", home)
    return [r["to_facility_id"] for r in linked] or [None]


async def _needs(ctx: Context) -> list[tuple[Line, str]]:
    """The waiting referral first, then the specialties the patient's reference centres offer."""
    # Only the home facility is needed (no demographics are shown): the app's access rule, no read.
    home = await access.require_can_read_patient(ctx.conn, ctx.principal, ctx.patient_id)
    referrals = await ctx.conn.fetch(
        # Waiting: not yet turned into an appointment, by the centre (triage) or by the patient
        # (a consultation booked since, at that centre, in that specialty).
        """SELECT r.to_facility_id, r.specialty FROM referrals r
           WHERE r.patient_id = $1 AND r.status IN ('requested', 'accepted') AND r.appointment_id IS NULL
             AND NOT EXISTS (
                 SELECT 1 FROM appointments a JOIN practitioners pr ON pr.id = a.practitioner_id
                 WHERE a.patient_id = r.patient_id AND a.facility_id = r.to_facility_id
                   AND a.status = 'booked' AND a.start_at > now() AND r.specialty = ANY(pr.specialties))
           ORDER BY r.urgency_rank, r.created_at LIMIT 1""",
        ctx.patient_id,
    )
    centres = await _centres(ctx.conn, home)
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


# The days searched for free times, nearest first: the first window usually holds the few times a
# screen shows, and expanding two weeks of slots for every turn cost most of a turn's CPU.
WINDOWS = (1, 6, SEARCH_DAYS)


async def _nearest_free(
    ctx: Context, centres: list[uuid.UUID | None], *, skip: datetime | None = None, **narrow: Any
) -> list[Slot]:
    """The first SLOTS_SHOWN free slots within SEARCH_DAYS, in order of start."""
    today = datetime.now(UTC).date()
    first = today
    found: list[Slot] = []
    for ahead in WINDOWS:
        last = today + timedelta(days=ahead)
        for facility_id in centres:
            slots = await list_free_slots(ctx.conn, first_day=first, last_day=last, facility_id=facility_id, **narrow)
            found += [s for s in slots if s.start != skip]
        if len(found) >= SLOTS_SHOWN:  # later windows only hold later times
            break
        first = last + timedelta(days=1)
    found.sort(key=lambda s: (s.start, str(s.practitioner_id)))
    return found[:SLOTS_SHOWN]


async def _free_slots(ctx: Context) -> list[tuple[Line, str]]:
    specialty, _, centre = ctx.session.choices["need"].partition("|")
    if centre:
        centres: list[uuid.UUID | None] = [uuid.UUID(centre)]
    else:
        home = await access.require_can_read_patient(ctx.conn, ctx.principal, ctx.patient_id)
        centres = await _centres(ctx.conn, home)
    return await _slot_lines(ctx, await _nearest_free(ctx, centres, specialty=specialty))


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
    slots = await _nearest_free(ctx, [current.facility_id], skip=current.start, practitioner_id=current.practitioner_id)
    return await _slot_lines(ctx, slots)


ITEMS: dict[str, Callable[[Context], Awaitable[list[tuple[Line, str]]]]] = {
    **chw.ITEMS,
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


VALUES: dict[str, Callable[[Context], Awaitable[Values | Outcome]]] = {
    **chw.VALUES,
    "slot": _slot,
    "appointment": _appointment,
    "consent": _consent,
    "pin_required": _pin_required,
}
