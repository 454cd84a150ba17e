"""The CHW menu's steps: a health worker on a basic phone finds a patient of their post (by phone,
ID or name), sees the post's consultations of today and tomorrow, and reads the reference
centre's answers to the post's referrals. Every read and write goes through the same domain
functions as the app (domain.patients, domain.booking, domain.referral), as the CHW's own login
with channel `ussd`: the app's access rules and audit trail hold unchanged."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec

from domain import facilities, patients
from domain.booking import appointments
from domain.errors import InvalidInput
from domain.referral import service as referrals
from domain.referral import worklists
from sms import texts
from sms.ussd.context import CONSULTATIONS_SHOWN, Again, Context, End, Goto, Outcome, end, patient_name, when
from sms.ussd.render import Line

MATCHES_SHOWN = 6  # more matches than this: the CHW is asked to type more of the name
ANSWERS_SHOWN = 6
_MIN_PHONE_DIGITS = 8

Values = tuple[dict[str, str], dict[str, str]]


def _posts(ctx: Context) -> list[uuid.UUID]:
    return sorted(ctx.principal.facilities_with("chw"))


# --- find a patient: a free answer --------------------------------------------------------------


def _queries(answer: str) -> list[patients.PatientQuery]:
    """What the typed answer may be, most precise first: a phone number, an identifier, a name."""
    limit = MATCHES_SHOWN + 1
    found = []
    if answer.lstrip("+").isdigit() and len(answer.lstrip("+")) >= _MIN_PHONE_DIGITS:
        found.append(patients.PatientQuery(phone=answer, limit=limit))
    found.append(patients.PatientQuery(identifier=answer, limit=limit))
    if any(c.isalpha() for c in answer):  # Khmer letters are alphabetic too
        found.append(patients.PatientQuery(name=answer, limit=limit))
    return found


async def find(ctx: Context, answer: str) -> Outcome:
    """A patient of the CHW's post: one match opens their menu, a few are listed by name, too many
    or none ask again. A patient of another post is not found, exactly as in the app."""
    for query in _queries(answer):
        ours: list[patients.Patient] = []
        for post in _posts(ctx):
            try:
                ours += await patients.search(
                    ctx.conn,
                    ctx.principal,
                    msgspec.structs.replace(query, facility_id=post),
                    default_region=ctx.default_region,
                )
            except InvalidInput:  # not a phone number, a name too short: try the next reading
                break
        if len(ours) == 1:
            ctx.session.patient_id = ours[0].id
            return Goto("chw_patient")
        if len(ours) > MATCHES_SHOWN:
            return Again("ussd_chw_too_many")
        if ours:
            ours.sort(key=lambda p: (patient_name(p).casefold(), str(p.id)))
            ctx.session.choices["matches"] = ",".join(str(p.id) for p in ours)
            return Goto("chw_matches")
    return Again("ussd_chw_no_match")


# --- numbered lists ---------------------------------------------------------------------------


async def _matches(ctx: Context) -> list[tuple[Line, str]]:
    ids = [uuid.UUID(i) for i in ctx.session.choices["matches"].split(",")]
    found = await patients.load_many(ctx.conn, ids)  # found by patients.search, under its access rule
    return [
        (Line(str(n), patient_name(found[i]), dynamic=True, keep=12), str(i))
        for n, i in enumerate(ids, start=1)
        if i in found
    ]


async def _post_consultations(ctx: Context) -> list[tuple[Line, str]]:
    """Today's and tomorrow's booked consultations of the patients of the CHW's post, by the
    post's calendar."""
    posts = _posts(ctx)
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


async def _answers_waiting(ctx: Context) -> list[tuple[Line, str]]:
    """The centre's answers to the post's referrals that nobody at the post has acknowledged:
    the app's list (worklists.sent, waiting), oldest answer first."""
    waiting: list[referrals.Referral] = []
    for post in _posts(ctx):
        waiting += await worklists.sent(ctx.conn, ctx.principal, post, status=None, limit=ANSWERS_SHOWN, waiting=True)
    waiting.sort(key=lambda r: (r.triaged_at or r.updated_at, str(r.id)))
    people = await patients.load_many(ctx.conn, [r.patient_id for r in waiting])
    lines = []
    for n, r in enumerate(waiting[:ANSWERS_SHOWN], start=1):
        name = patient_name(people[r.patient_id]) if r.patient_id in people else "?"
        lines.append((Line(str(n), f"{name} {r.specialty}", dynamic=True, keep=12), str(r.id)))
    return lines


ITEMS: dict[str, Callable[[Context], Awaitable[list[tuple[Line, str]]]]] = {
    "matches": _matches,
    "post_consultations": _post_consultations,
    "answers_waiting": _answers_waiting,
}

# --- a screen's values ----------------------------------------------------------------------------


async def _patient(ctx: Context) -> Values | Outcome:
    return {"name": patient_name(await patients.get(ctx.conn, ctx.principal, ctx.patient_id))}, {}


async def _referral_answer(ctx: Context) -> Values | Outcome:
    """One answer: whose, which specialty, and what the centre said (its advice or reason, or the
    appointment it booked). The CHW's next errand is for this patient."""
    referral = await referrals.get(ctx.conn, ctx.principal, uuid.UUID(ctx.session.choices["referral"]))
    patient = await patients.get(ctx.conn, ctx.principal, referral.patient_id)
    ctx.session.patient_id = patient.id
    note = referral.outcome_note or ""
    outcome = texts.text(ctx.language, f"ussd_answer_{referral.status}", when="")
    if referral.status == "accepted" and referral.appointment_id is not None:
        booked = await appointments.get(ctx.conn, ctx.principal, referral.appointment_id)
        outcome = texts.text(
            ctx.language, "ussd_answer_accepted", when=when(booked.start, booked.timezone, ctx.language)
        )
        note = (await facilities.get(ctx.conn, booked.facility_id)).name
    values = {"name": patient_name(patient), "specialty": referral.specialty, "note": note}
    return values, {"outcome": outcome}


VALUES: dict[str, Callable[[Context], Awaitable[Values | Outcome]]] = {
    "patient": _patient,
    "referral_answer": _referral_answer,
}

# --- free answers and actions ---------------------------------------------------------------------


async def _acknowledge(ctx: Context, _value: str) -> End:
    await referrals.acknowledge(ctx.conn, ctx.principal, uuid.UUID(ctx.session.choices["referral"]))
    return end("ussd_chw_ack_done")


ANSWERS: dict[str, Callable[[Context, str], Awaitable[Outcome]]] = {"chw_find": find}
ACTIONS: dict[str, Callable[[Context, str], Awaitable[End]]] = {"acknowledge": _acknowledge}
