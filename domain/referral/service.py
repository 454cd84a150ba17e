"""Referrals, closed loop: refer, triage (accept and book, answer with advice, decline), and the
outcome back to the referring facility and the patient as outbox events.

Who: a CHW, clinician or specialist of the referring facility refers a patient they may see, to a
reference centre in that facility's referral network. Clinical staff or the admin of the centre
triage. Both facilities' staff read the referral.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec

from domain import access
from domain.audit import trail
from domain.booking import appointments
from domain.booking.appointments import Mode
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.principal import Principal, Role
from domain.record import service as record
from domain.record.types import EncounterIn, NoteIn
from infra.db import Connection
from infra.outbox import enqueue

Urgency = Literal["routine", "urgent", "emergency"]
ReferralStatus = Literal["requested", "accepted", "answered", "declined", "cancelled"]
TRIAGE_ROLES: tuple[Role, ...] = ("clinician", "specialist", "facility_admin")


class ReferralIn(msgspec.Struct, kw_only=True):
    patient_id: uuid.UUID
    to_facility_id: uuid.UUID
    specialty: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    urgency: Urgency
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    observation_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=50)] = []
    from_facility_id: uuid.UUID | None = None  # defaults to the referrer's facility


class Accept(msgspec.Struct, kw_only=True, tag="accept", tag_field="decision"):
    start: datetime
    practitioner_id: uuid.UUID | None = None  # defaults to the triaging practitioner
    mode: Mode = "video"


class Advise(msgspec.Struct, kw_only=True, tag="advise", tag_field="decision"):
    advice: Annotated[str, msgspec.Meta(min_length=1, max_length=20000)]


class Decline(msgspec.Struct, kw_only=True, tag="decline", tag_field="decision"):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


Decision = Accept | Advise | Decline


class Referral(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    patient_id: uuid.UUID
    from_facility_id: uuid.UUID
    to_facility_id: uuid.UUID
    specialty: str
    urgency: Urgency
    reason: str
    observation_ids: list[uuid.UUID]
    status: ReferralStatus
    referred_by: uuid.UUID
    triaged_by: uuid.UUID | None
    triaged_at: datetime | None
    outcome_note: str | None
    appointment_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int
    # When a health worker of the referring facility acknowledged the centre's answer (the post's
    # "answers waiting" list holds it until then: worklists.answers_waiting).
    outcome_seen_at: datetime | None = None
    outcome_seen_by: uuid.UUID | None = None


def to_referral(row: asyncpg.Record) -> Referral:
    return Referral(**{f: row[f] for f in Referral.__struct_fields__})


async def _history(
    conn: Connection, principal: Principal, r: Referral, from_status: str | None, note: str | None
) -> None:
    await conn.execute(
        """INSERT INTO referral_events (referral_id, actor_user_id, from_status, to_status, note)
           VALUES ($1, $2, $3, $4, $5)""",
        r.id,
        principal.user_id,
        from_status,
        r.status,
        note,
    )


async def refer(conn: Connection, principal: Principal, data: ReferralIn) -> Referral:
    home = await access.require_can_write_record(conn, principal, data.patient_id)
    mine = principal.facilities_with(*access.CLINICAL_ROLES)
    from_facility = data.from_facility_id or access.authoring_facility(principal, home)
    if from_facility not in mine:
        raise Forbidden("not_a_member", "you refer from a facility where you work", field="from_facility_id")
    row = await conn.fetchrow(
        """SELECT EXISTS (SELECT 1 FROM facilities WHERE id = $2),
                  EXISTS (SELECT 1 FROM referral_links WHERE from_facility_id = $1 AND to_facility_id = $2)""",
        from_facility,
        data.to_facility_id,
    )
    known, linked = row if row is not None else (False, False)
    if not known:  # an unknown centre is not found, as an unknown practitioner of a booking is
        raise NotFound("facility_not_found", "no such facility", field="to_facility_id")
    if not linked:
        raise InvalidInput(
            "not_in_network", "that centre is not in this facility's referral network", field="to_facility_id"
        )
    attached = await conn.fetchval(
        """SELECT count(*) FROM record_entries WHERE id = ANY($1::uuid[]) AND patient_id = $2
           AND kind = 'observation' AND status = 'current'""",
        data.observation_ids,
        data.patient_id,
    )
    if attached != len(set(data.observation_ids)):
        raise InvalidInput(
            "observation_not_found", "attach current observations of this patient", field="observation_ids"
        )
    row = await conn.fetchrow(
        """INSERT INTO referrals (id, patient_id, from_facility_id, to_facility_id, specialty, urgency, reason,
                                  observation_ids, status, referred_by, channel)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested', $9, $10) RETURNING *""",
        uuid.uuid4(),
        data.patient_id,
        from_facility,
        data.to_facility_id,
        data.specialty,
        data.urgency,
        data.reason,
        list(dict.fromkeys(data.observation_ids)),
        principal.user_id,
        principal.channel,
    )
    assert row is not None
    referral = to_referral(row)
    await _history(conn, principal, referral, None, None)
    await _announce(conn, "referral.requested", referral, audience={"facility_id": str(referral.to_facility_id)})
    await _audit(conn, principal, "create", referral)
    return referral


async def _announce(conn: Connection, topic: str, r: Referral, audience: dict[str, Any]) -> None:
    # No health detail: the notification and SMS senders say "news about a referral" and link to it.
    payload = {"referral_id": str(r.id), "status": r.status, "urgency": r.urgency, **audience}
    await enqueue(conn, topic, payload)


async def _audit(conn: Connection, principal: Principal, action: trail.Action, r: Referral) -> None:
    await trail.record(
        conn,
        principal,
        action=action,
        resource_type="ServiceRequest",
        resource_id=r.id,
        patient_ids=[r.patient_id],
        facility_id=r.to_facility_id if action == "update" else r.from_facility_id,
    )


async def _load(conn: Connection, referral_id: uuid.UUID, *, for_update: bool = False) -> Referral:
    row = await conn.fetchrow(
        "SELECT * FROM referrals WHERE id = $1" + (" FOR UPDATE" if for_update else ""), referral_id
    )
    if row is None:
        raise NotFound("referral_not_found", "no such referral")
    return to_referral(row)


def _require_member(principal: Principal, r: Referral) -> None:
    staff = principal.facilities_with(*access.CLINICAL_ROLES, "facility_admin")
    if not (principal.is_system_admin or r.from_facility_id in staff or r.to_facility_id in staff):
        raise Forbidden("referral_access_denied", "only the referring facility and the centre read a referral")


async def get(conn: Connection, principal: Principal, referral_id: uuid.UUID) -> Referral:
    referral = await _load(conn, referral_id)
    _require_member(principal, referral)
    await _audit(conn, principal, "read", referral)
    return referral


async def triage(conn: Connection, principal: Principal, referral_id: uuid.UUID, decision: Decision) -> Referral:
    current = await _load(conn, referral_id, for_update=True)
    if not any(principal.has_role(role, current.to_facility_id) for role in TRIAGE_ROLES):
        raise Forbidden("role_required", "only clinical staff or the admin of the centre triage its referrals")
    if current.status != "requested":
        raise Conflict("invalid_status", f"a {current.status} referral cannot be triaged again")
    appointment_id = None
    match decision:
        case Accept():
            appointment = await appointments.book(
                conn,
                principal,
                patient_id=current.patient_id,
                practitioner_id=decision.practitioner_id or _own_practitioner(principal),
                start=decision.start,
                mode=decision.mode,
                reason=current.reason,
            )
            status, note, appointment_id = "accepted", None, appointment.id
        case Advise():
            # An asynchronous consultation: an encounter answering the referral, and the advice as
            # a note in it, in the shared record where the next clinician sees them.
            encounter = await record.write(
                conn,
                principal,
                current.patient_id,
                EncounterIn(mode="async", reason=current.reason),
                referral_id=current.id,
            )
            await record.write(
                conn,
                principal,
                current.patient_id,
                NoteIn(text=decision.advice, category="advice", encounter_id=encounter.id),
            )
            status, note = "answered", decision.advice
        case Decline():
            status, note = "declined", decision.reason
    row = await conn.fetchrow(
        """UPDATE referrals SET status = $2, triaged_by = $3, triaged_at = now(), outcome_note = $4,
                                appointment_id = $5, updated_at = now(), version = version + 1
           WHERE id = $1 RETURNING *""",
        referral_id,
        status,
        principal.user_id,
        note,
        appointment_id,
    )
    assert row is not None
    referral = to_referral(row)
    await _history(conn, principal, referral, current.status, note)
    # The loop closes twice: the referring facility's work list and the patient.
    await _announce(conn, "referral.outcome", referral, {"facility_id": str(referral.from_facility_id)})
    await _announce(conn, "patient.referral_outcome", referral, {"patient_id": str(referral.patient_id)})
    await _audit(conn, principal, "update", referral)
    return referral


def _own_practitioner(principal: Principal) -> uuid.UUID:
    if principal.practitioner_id is None:
        raise InvalidInput("practitioner_required", "name the practitioner to book with", field="practitioner_id")
    return principal.practitioner_id


async def cancel(conn: Connection, principal: Principal, referral_id: uuid.UUID, reason: str | None) -> Referral:
    """The referring facility withdraws a referral the centre has not triaged yet."""
    current = await _load(conn, referral_id, for_update=True)
    if current.from_facility_id not in principal.facilities_with(*access.CLINICAL_ROLES, "facility_admin"):
        raise Forbidden("role_required", "only the referring facility's staff cancel its referral")
    if current.status != "requested":
        raise Conflict("invalid_status", f"a {current.status} referral cannot be cancelled")
    row = await conn.fetchrow(
        """UPDATE referrals SET status = 'cancelled', outcome_note = $2, updated_at = now(), version = version + 1
           WHERE id = $1 RETURNING *""",
        referral_id,
        reason,
    )
    assert row is not None
    referral = to_referral(row)
    await _history(conn, principal, referral, current.status, reason)
    await _announce(conn, "referral.cancelled", referral, {"facility_id": str(referral.to_facility_id)})
    await _audit(conn, principal, "cancel", referral)
    return referral


ANSWERED: tuple[ReferralStatus, ...] = ("accepted", "answered", "declined")  # the centre has answered


async def acknowledge(conn: Connection, principal: Principal, referral_id: uuid.UUID) -> Referral:
    """A health worker of the referring facility has read the centre's answer: it leaves the
    facility's answers-waiting list. Acknowledging twice keeps the first reader and time."""
    current = await _load(conn, referral_id, for_update=True)
    if current.from_facility_id not in principal.facilities_with(*access.CLINICAL_ROLES, "facility_admin"):
        raise Forbidden("role_required", "only the referring facility's staff acknowledge the centre's answer")
    if current.status not in ANSWERED:
        raise Conflict("invalid_status", f"a {current.status} referral has no answer to acknowledge")
    if current.outcome_seen_at is not None:
        return current
    row = await conn.fetchrow(
        """UPDATE referrals SET outcome_seen_at = now(), outcome_seen_by = $2, updated_at = now(),
                                version = version + 1
           WHERE id = $1 RETURNING *""",
        referral_id,
        principal.user_id,
    )
    assert row is not None
    referral = to_referral(row)
    await _history(conn, principal, referral, current.status, "answer acknowledged")
    await _audit(conn, principal, "read", referral)
    return referral
