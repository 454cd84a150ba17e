"""Every change to an appointment leaves three rows in its own transaction: its history
(appointment_events), an audit event, and an outbox event for the channels that notify people."""

from __future__ import annotations

from domain.audit import trail
from domain.booking.model import Appointment
from domain.principal import Principal
from infra import instants
from infra.db import Connection


def history_audit_outbox(after: str) -> str:
    """History, audit and outbox rows for a change, as data-modifying CTEs of one statement (the
    hottest paths pay one round trip, not three), written once per row of the relation `after`
    (none: nothing written). Parameters are those of record_args. The audit row has the shape
    domain.audit.trail writes."""
    return f"""
    history AS (
        INSERT INTO appointment_events (appointment_id, actor_user_id, action, from_status, to_status,
                                        start_at, end_at, reason)
        SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM {after}
    ), audit AS (
        INSERT INTO audit_events (actor_user_id, actor_role, facility_id, patient_id, action, resource_type,
                                  resource_id, channel, outcome, request_id)
        SELECT $2, $9, $10, $11, $3, 'Appointment', $1::text, $12, 'success', $13 FROM {after}
    ), announced AS (
        INSERT INTO outbox (topic, payload) SELECT 'appointment.' || $3, $14 FROM {after}
    )"""


def record_args(
    principal: Principal, appointment: Appointment, action: trail.Action, from_status: str | None, reason: str | None
) -> tuple[object, ...]:
    payload = {
        "appointment_id": str(appointment.id),
        "patient_id": str(appointment.patient_id),
        "practitioner_id": str(appointment.practitioner_id),
        "start": instants.text(appointment.start),
        "status": appointment.status,
    }
    return (
        appointment.id,
        principal.user_id,
        action,
        from_status,
        appointment.status,
        appointment.start,
        appointment.end,
        reason,
        principal.primary_role,
        appointment.facility_id,
        appointment.patient_id,
        principal.channel,
        principal.request_id,
        payload,
    )


async def record_change(
    conn: Connection,
    principal: Principal,
    appointment: Appointment,
    action: trail.Action,
    from_status: str | None,
    reason: str | None,
) -> None:
    """History, audit and outbox for a change, in the change's own transaction."""
    await conn.execute(
        f"WITH {history_audit_outbox('(SELECT) AS once')} SELECT 1",
        *record_args(principal, appointment, action, from_status, reason),
    )
