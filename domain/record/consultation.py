"""Completing a consultation: its results, the appointment's move to 'completed' and the
`record.result_ready` outbox event are written in the caller's one transaction, so they commit
together or not at all (and a retry with the same Idempotency-Key replays the first answer
instead of writing twice)."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

from domain import access
from domain.booking import appointments
from domain.booking.appointments import Appointment
from domain.principal import Principal
from domain.record import service
from domain.record.types import ConditionIn, EncounterIn, Entry, NoteIn, ObservationIn, PrescriptionIn
from infra.db import Connection
from infra.outbox import enqueue

ResultIn = ObservationIn | ConditionIn | PrescriptionIn | NoteIn


class ConsultationResults(msgspec.Struct, kw_only=True):
    encounter: EncounterIn | None = None  # defaults: the appointment's mode, reason and times
    entries: Annotated[list[ResultIn], msgspec.Meta(max_length=200)] = []


class Completed(msgspec.Struct, kw_only=True):
    appointment: Appointment
    encounter: Entry
    entries: list[Entry]


async def complete(
    conn: Connection, principal: Principal, appointment_id: uuid.UUID, results: ConsultationResults
) -> Completed:
    """The appointment is locked and moved first (refusing a wrong status or practitioner before
    anything is written); then one encounter and each result inside it."""
    appointment = await appointments.complete(conn, principal, appointment_id)
    home = await access.require_can_write_record(conn, principal, appointment.patient_id)
    given = results.encounter or EncounterIn()
    encounter_in = EncounterIn(
        mode=appointment.mode if results.encounter is None else given.mode,
        reason=given.reason or appointment.reason,
        started_at=given.started_at or min(appointment.start, appointment.updated_at),
        ended_at=given.ended_at,
        appointment_id=appointment.id,
    )
    common = {"appointment_facility": appointment.facility_id, "home_facility": home}
    encounter = await service.write(
        conn, principal, appointment.patient_id, encounter_in, appointment_id=appointment.id, **common
    )
    entries = []
    for item in results.entries:
        item.encounter_id = encounter.id
        entries.append(await service.write(conn, principal, appointment.patient_id, item, **common))
    # Announced with the results, in their transaction: the patient hears that a result is ready
    # (never what it says) once, and only if it committed. Ids only, no health detail.
    await enqueue(
        conn,
        "record.result_ready",
        {
            "patient_id": str(appointment.patient_id),
            "appointment_id": str(appointment.id),
            "encounter_id": str(encounter.id),
        },
    )
    return Completed(appointment=appointment, encounter=encounter, entries=entries)
