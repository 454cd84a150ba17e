"""BOOK by SMS: what can be booked (the waiting referral first, else the specialties of the
reference centres the patient's health post refers to: domain.booking.offers, as USSD shows
them) → a numbered list of the next free times on the facility's clock → a number → YES/NO →
booked through the app's own `appointments.book` as the number's login (channel `sms`: the same
access rule, audit and double-booking guarantee).

A repeated MessageSid cannot book twice: the inbound message's row (sms.inbound) is written in
the booking's transaction. A time taken meanwhile is said so, with fresh times to choose from.
"""

from __future__ import annotations

from domain import facilities, practitioners
from domain.booking import appointments, offers
from domain.booking.model import Mode
from domain.booking.slots import Slot
from sms import texts
from sms.conversation import KEEP, AskBook, AskNeed, AskSlot, Reply, attempt, wall_clock
from sms.journeys.turn import Turn, short

SLOTS_SHOWN = 4
NEEDS_SHOWN = 6  # the referral and five specialties: three segments in Khmer
# The time is no longer there (booked by someone, passed, or taken off the schedule): fresh ones.
_GONE = {"slot_taken", "slot_unavailable", "start_in_past"}
# A feature phone has no video: a voice call first, if the slot offers it.
_MODES: tuple[Mode, ...] = ("audio", "video", "async")


async def start(turn: Turn) -> Reply:
    principal, patient_id = turn.acting
    needs = (await offers.needs(turn.conn, principal, patient_id))[:NEEDS_SHOWN]
    if not needs:
        return Reply("sms_book_none")
    if needs[0].referral or len(needs) == 1:  # nothing to choose: straight to the times
        return await _times(turn, needs[0], "sms_book_slots")
    labels = [_label(turn, need) for need in needs]
    return Reply("sms_book_needs", {"items": turn.numbered(labels)}, AskNeed(patient_id, needs))


def _label(turn: Turn, need: offers.Need) -> str:
    return texts.text(turn.language, "sms_referral_item", specialty=need.specialty) if need.referral else need.specialty


async def _times(turn: Turn, need: offers.Need, template: str) -> Reply:
    principal, patient_id = turn.acting
    slots = await offers.free_slots(turn.conn, principal, patient_id, need, limit=SLOTS_SHOWN)
    if not slots:
        return Reply("sms_book_no_slots", {"specialty": need.specialty})
    items = turn.numbered([wall_clock(s.start, s.timezone) for s in slots])
    return Reply(template, {"specialty": need.specialty, "items": items}, AskSlot(patient_id, need, slots))


def _chosen(number: int | None, count: int) -> int | None:
    return number - 1 if number is not None and 1 <= number <= count else None


async def choose_need(turn: Turn, question: AskNeed, number: int | None) -> Reply:
    index = _chosen(number, len(question.needs))
    if index is None:
        return Reply("sms_choose_number", {"n": len(question.needs)}, KEEP)
    return await _times(turn, question.needs[index], "sms_book_slots")


async def choose_slot(turn: Turn, question: AskSlot, number: int | None) -> Reply:
    index = _chosen(number, len(question.slots))
    if index is None:
        return Reply("sms_choose_number", {"n": len(question.slots)}, KEEP)
    slot = question.slots[index]
    return Reply("sms_book_confirm", await _describe(turn, slot), AskBook(question.patient_id, question.need, slot))


async def _describe(turn: Turn, slot: Slot) -> dict[str, object]:
    doctor = await practitioners.get(turn.conn, slot.practitioner_id)
    facility = await facilities.get(turn.conn, slot.facility_id)
    return {
        "when": wall_clock(slot.start, slot.timezone),
        "doctor": short(doctor.name),
        "facility": short(facility.name),
    }


async def confirm(turn: Turn, question: AskBook, *, yes: bool) -> Reply:
    if not yes:
        return Reply("sms_book_dropped")
    principal, patient_id = turn.acting
    slot = question.slot
    mode: Mode = next((m for m in _MODES if m in slot.modes), "video")
    refused = await attempt(
        appointments.book(
            turn.conn,
            principal,
            patient_id=patient_id,
            practitioner_id=slot.practitioner_id,
            start=slot.start,
            mode=mode,
        ),
        turn.conn,
    )
    if refused is None:
        return Reply("sms_booked", await _describe(turn, slot))
    if refused.code in _GONE:
        return await _times(turn, question.need, "sms_book_taken")
    return Reply("sms_book_refused")
