"""What the USSD screens show: their numbered lists (ITEMS) and their values (VALUES), read
through the same domain functions as the app, as the phone's login (channel `ussd`), so the app's
access rules and audit trail apply unchanged."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from domain import facilities, practitioners
from domain.booking import appointments, offers
from domain.booking.slots import Slot
from infra.db import Connection
from sms import texts
from sms.ussd import chw, pin
from sms.ussd.context import (
    APPOINTMENTS_SHOWN,
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
    slots = await offers.nearest_free(
        ctx.conn, [current.facility_id], limit=SLOTS_SHOWN, skip=current.start, practitioner_id=current.practitioner_id
    )
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
