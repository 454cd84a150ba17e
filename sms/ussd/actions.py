"""What the USSD screens do: free answers (ANSWERS: PINs, a CHW's search) and the actions that
end a session with their outcome (ACTIONS), through the same domain functions as the app: same
access rules, same double-booking guarantee, audited with channel `ussd`."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import cast

from domain import facilities, patients
from domain.audit import trail
from domain.booking import appointments
from domain.booking.model import Mode
from domain.consent import service as consent
from sms.ussd import chw, pin
from sms.ussd.context import (
    Again,
    Context,
    End,
    Goto,
    Outcome,
    active_network_consents,
    end,
    parse_slot,
    when,
)

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
    first = ctx.session.choices.get("new_pin")
    if first is None:
        return Goto("pin_new")
    if not pin.well_formed(answer):  # a slip of the keypad: asked again once, like any screen
        return Again("ussd_pin_format")
    del ctx.session.choices["new_pin"]
    if answer != first:
        return end("ussd_pin_mismatch")
    await pin.set_pin(ctx.conn, ctx.patient_id, answer)
    return end("ussd_pin_saved")


ANSWERS: dict[str, Callable[[Context, str], Awaitable[Outcome]]] = {
    **chw.ANSWERS,
    "pin_enter": _pin_enter,
    "pin_new": _pin_new,
    "pin_repeat": _pin_repeat,
}

# --- actions: they end the session ----------------------------------------------------------


async def _book(ctx: Context, _value: str) -> End:
    slot = parse_slot(ctx.session.choices["slot"])
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
    slot = parse_slot(ctx.session.choices["slot"])
    moved = await appointments.reschedule(
        ctx.conn, ctx.principal, uuid.UUID(ctx.session.choices["appointment"]), start=slot.start
    )
    return end("ussd_moved", {"when": when(moved.start, slot.timezone, ctx.language)})


async def _consent_give(ctx: Context, _value: str) -> End:
    if not await active_network_consents(ctx):
        await consent.grant(ctx.conn, ctx.principal, ctx.patient_id, consent.ConsentIn(scope="network"))
    return end("ussd_consent_done_give")


async def _consent_withdraw(ctx: Context, _value: str) -> End:
    for given in await active_network_consents(ctx):
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
    **chw.ACTIONS,
}
