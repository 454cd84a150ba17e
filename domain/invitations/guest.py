"""A guest with an invitation link: opening it (single use) and entering the consultation's room.

The guest has no account. Their credential is the pair (link token, browser key): the page that
opens the link makes a random key, keeps it in the browser, and sends both. Opening claims the
link for that key: the first browser wins, under a row lock, and two people opening one link at
once get one success and one `invitation_used`; the same browser may open it again (a reload, an
answer lost on a bad network). The pair is good for one thing only, joining this consultation's
call (realtime.handler); it is not an access token, so no other route accepts it.

A link opens from JOIN_OPENS before the start (earlier is `too_early`, and nothing is claimed:
a guest who taps the SMS at once can still open it later in another browser) until the room
closes (JOIN_CLOSES after the end); revoked or closed, it is refused. Openings, refused
openings and joins are audited, with no user and role 'guest'.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from domain.audit import trail
from domain.booking.consultation import JOIN_CLOSES, JOIN_OPENS, require_room_open
from domain.booking.model import Appointment, load_appointment
from domain.errors import Conflict, DomainError, Forbidden, NotFound, Unauthenticated
from domain.invitations.model import OPEN_STATUSES, Locale, Role, digest
from infra.db import Connection, Pool


class Opened(msgspec.Struct, kw_only=True):
    """What the guest's page learns on opening the link: nothing of the patient."""

    invitation_id: uuid.UUID
    appointment_id: uuid.UUID
    role: Role
    language: str | None
    name: str
    locale: Locale
    start: datetime
    end: datetime
    expires_at: datetime


class Guest(msgspec.Struct, frozen=True, kw_only=True):
    """A guest in a room, as the signalling knows them."""

    invitation_id: uuid.UUID
    appointment_id: uuid.UUID
    role: Role
    language: str | None
    name: str


_ROW = """SELECT i.id, i.appointment_id, i.role, i.language, i.locale, i.name, i.device_hash, i.revoked_at,
                 a.status, a.start_at, a.end_at, a.patient_id, a.facility_id
          FROM consultation_invitations i JOIN appointments a ON a.id = i.appointment_id
          WHERE i.token_hash = $1 FOR UPDATE OF i"""


def _refusal(row: Any, device_hash: bytes, now: datetime) -> DomainError | None:
    if row["revoked_at"] is not None:
        return Forbidden("invitation_revoked", "this invitation was withdrawn: ask for a new one")
    if row["status"] not in OPEN_STATUSES or now > row["end_at"] + JOIN_CLOSES:
        return Conflict("invitation_expired", "this invitation has expired: the consultation is over")
    if row["device_hash"] is not None and bytes(row["device_hash"]) != device_hash:
        return Conflict("invitation_used", "this link was already opened on another phone: ask for a new one")
    return None


async def open_link(conn: Connection, pool: Pool, token: str, device: str, *, request_id: str | None) -> Opened:
    """Claim the link for this browser (or find it already this browser's)."""
    row = await conn.fetchrow(_ROW, digest(token))
    if row is None:
        raise NotFound("invitation_not_found", "this link is not valid: check it, or ask for a new one")
    device_hash = digest(device)
    now = datetime.now(UTC)
    refusal = _refusal(row, device_hash, now)
    if refusal is not None:
        # The request's transaction rolls back with the refusal: the audit row goes apart.
        async with pool.acquire() as own, own.transaction():
            await _audit(own, row, "open_invitation", "refused", request_id)
        raise refusal
    opens_at = row["start_at"] - JOIN_OPENS
    if now < opens_at:
        raise Conflict(
            "too_early",
            "the consultation's room is not open yet: open the link again at the time of the consultation",
            opens_at=opens_at.isoformat().replace("+00:00", "Z"),
        )
    await conn.execute(
        """UPDATE consultation_invitations
              SET opened_at = coalesce(opened_at, now()), device_hash = coalesce(device_hash, $2)
            WHERE id = $1""",
        row["id"],
        device_hash,
    )
    await _audit(conn, row, "open_invitation", "success", request_id)
    return Opened(
        invitation_id=row["id"],
        appointment_id=row["appointment_id"],
        role=row["role"],
        language=row["language"],
        name=row["name"],
        locale=row["locale"],
        start=row["start_at"],
        end=row["end_at"],
        expires_at=row["end_at"] + JOIN_CLOSES,
    )


async def enter(conn: Connection, token: str, device: str, appointment_id: uuid.UUID) -> tuple[Appointment, Guest]:
    """The guest joins (or rejoins) the room: the link must have been opened by this browser,
    not revoked, for this consultation, whose room is open. Audited."""
    row = await conn.fetchrow(_ROW, digest(token))
    if row is None or row["device_hash"] is None or bytes(row["device_hash"]) != digest(device):
        raise Unauthenticated("invalid_guest_credentials", "open your invitation link again")
    if row["revoked_at"] is not None:
        raise Forbidden("invitation_revoked", "this invitation was withdrawn")
    if row["appointment_id"] != appointment_id:
        raise Forbidden("not_a_participant", "this invitation is for another consultation")
    appointment = await load_appointment(conn, appointment_id)
    require_room_open(appointment)
    await conn.execute(
        "UPDATE consultation_invitations SET joined_at = coalesce(joined_at, now()) WHERE id = $1", row["id"]
    )
    await _audit(conn, row, "join_call", "success", None)
    return appointment, Guest(
        invitation_id=row["id"],
        appointment_id=appointment_id,
        role=row["role"],
        language=row["language"],
        name=row["name"],
    )


async def identify(conn: Connection, token: str, device: str) -> Guest:
    """Who holds this opened link, for the pre-call check (realtime.echo): the same credential
    as joining, refused alike, while the consultation's room is open. Reads no record, so it is
    not audited; it records no join either (the test call is not the call)."""
    row = await conn.fetchrow(_ROW.replace(" FOR UPDATE OF i", ""), digest(token))
    if row is None or row["device_hash"] is None or bytes(row["device_hash"]) != digest(device):
        raise Unauthenticated("invalid_guest_credentials", "open your invitation link again")
    if row["revoked_at"] is not None:
        raise Forbidden("invitation_revoked", "this invitation was withdrawn")
    require_room_open(await load_appointment(conn, row["appointment_id"]))
    return Guest(
        invitation_id=row["id"],
        appointment_id=row["appointment_id"],
        role=row["role"],
        language=row["language"],
        name=row["name"],
    )


async def still_invited(conn: Connection, invitation_id: uuid.UUID) -> bool:
    """Not revoked (checked again once the guest is in the room: a revocation may have
    committed between entering and taking a place, and its clean-up found nobody to remove)."""
    return bool(
        await conn.fetchval("SELECT revoked_at IS NULL FROM consultation_invitations WHERE id = $1", invitation_id)
    )


async def _audit(conn: Connection, row: Any, action: trail.Action, outcome: str, request_id: str | None) -> None:
    await trail.record_guest(
        conn,
        action=action,
        invitation_id=row["id"],
        role=row["role"],
        patient_id=row["patient_id"],
        facility_id=row["facility_id"],
        outcome=outcome,
        request_id=request_id,
    )
