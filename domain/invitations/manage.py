"""Inviting guests into a video consultation, listing and revoking them, by the care team.

Who may: domain.access.may_invite_guests (the specialist, the booking health worker, a CHW or
clinician of the consultation's or the patient's facility); who may list: whoever may see the
appointment. A consultation has at most MAX_LIVE live invitations and one per phone number;
the appointment's row is locked while inviting, so two invitations at once count right.
Every invitation and revocation is audited in its own transaction.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

from domain import access
from domain.audit import trail
from domain.booking.consultation import JOIN_CLOSES
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.invitations.model import (
    COLUMNS,
    FROM,
    MAX_LIVE,
    OPEN_STATUSES,
    Invitation,
    Locale,
    Role,
    digest,
    new_secret,
    to_invitation,
)
from domain.phone import normalize
from domain.principal import Principal
from infra.db import Connection

_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_LOCALES = ("km", "vi", "fr", "en")


class Created(NamedTuple):
    invitation: Invitation
    token: str  # the link's secret: it goes into the SMS and nowhere else
    start: datetime
    timezone: str


async def _appointment(
    conn: Connection, principal: Principal, appointment_id: uuid.UUID, *, for_update: bool = False
) -> Any:
    row = await conn.fetchrow(
        f"""SELECT {access.APPOINTMENT_VISIBLE} AS visible, a.id, a.patient_id, a.practitioner_id, a.facility_id,
                   a.booked_by, a.start_at, a.end_at, a.status, a.mode, f.timezone, p.home_facility_id,
                   p.preferred_language
            FROM appointments a JOIN facilities f ON f.id = a.facility_id JOIN patients p ON p.id = a.patient_id
            WHERE a.id = $6{" FOR UPDATE OF a" if for_update else ""}""",
        *access.appointment_args(principal),
        appointment_id,
    )
    if row is None:
        raise NotFound("appointment_not_found", "no such appointment")
    if not row["visible"]:
        raise Forbidden("appointment_access_denied", "you may not access this appointment")
    return row


def _require_inviter(principal: Principal, appointment: Any) -> None:
    if not access.may_invite_guests(
        principal,
        practitioner_id=appointment["practitioner_id"],
        booked_by=appointment["booked_by"],
        facility_id=appointment["facility_id"],
        home_facility_id=appointment["home_facility_id"],
    ):
        raise Forbidden(
            "role_required",
            "only the consultation's specialist or a health worker caring for the patient invites or revokes guests",
        )


def _language(role: Role, language: str | None) -> str | None:
    if role != "interpreter":
        if language is not None:
            raise InvalidInput("language_not_allowed", "only an interpreter has a language", field="language")
        return None
    if language is None:
        raise InvalidInput("language_required", "say which language the interpreter interprets", field="language")
    code = language.strip().lower()
    if not _LANGUAGE.match(code):
        raise InvalidInput("invalid_language", "a language is an ISO 639 code such as 'km'", field="language")
    return code


async def create(
    conn: Connection,
    principal: Principal,
    appointment_id: uuid.UUID,
    *,
    phone: str,
    name: str,
    role: Role,
    language: str | None,
    locale: Locale | None,
    default_region: str,
) -> Created:
    """Invite a guest; the caller sends them the link (the returned token) and nobody else."""
    shown_name = " ".join(name.split())
    if not shown_name:
        raise InvalidInput("invalid_name", "the guest's name is empty", field="name")
    language = _language(role, language)
    e164 = normalize(phone, default_region)
    appointment = await _appointment(conn, principal, appointment_id, for_update=True)
    _require_inviter(principal, appointment)
    if appointment["mode"] == "async":
        raise Conflict("no_call", "an asynchronous consultation has no call to invite anyone to")
    if appointment["status"] not in OPEN_STATUSES:
        raise Conflict("consultation_closed", f"the appointment is {appointment['status']}")
    if datetime.now(UTC) > appointment["end_at"] + JOIN_CLOSES:
        raise Conflict("outside_consultation_window", "the consultation's room has closed")
    live = await conn.fetch(
        "SELECT id, phone FROM consultation_invitations WHERE appointment_id = $1 AND revoked_at IS NULL",
        appointment_id,
    )
    if any(r["phone"] == e164 for r in live):
        raise Conflict(
            "already_invited",
            "this number is already invited: revoke that invitation to send a new link",
            field="phone",
        )
    if len(live) >= MAX_LIVE:
        raise Conflict("too_many_guests", f"a consultation has at most {MAX_LIVE} invited guests at once")
    token = new_secret()
    invitation_id = uuid.uuid4()
    chosen_locale = locale or (
        appointment["preferred_language"] if appointment["preferred_language"] in _LOCALES else "en"
    )
    await conn.execute(
        """INSERT INTO consultation_invitations (id, appointment_id, role, language, locale, name, phone, token_hash,
                                                 invited_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        invitation_id,
        appointment_id,
        role,
        language,
        chosen_locale,
        shown_name,
        e164,
        digest(token),
        principal.user_id,
    )
    await trail.record(
        conn,
        principal,
        action="invite",
        resource_type="ConsultationInvitation",
        resource_id=invitation_id,
        patient_ids=[appointment["patient_id"]],
        facility_id=appointment["facility_id"],
        purpose=role,
    )
    return Created(await _one(conn, invitation_id), token, appointment["start_at"], appointment["timezone"])


async def attach_sms(conn: Connection, invitation_id: uuid.UUID, sms_id: uuid.UUID) -> Invitation:
    """The SMS that carries the link, so the inviter sees whether it left."""
    await conn.execute("UPDATE consultation_invitations SET sms_id = $2 WHERE id = $1", invitation_id, sms_id)
    return await _one(conn, invitation_id)


async def list_for(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> list[Invitation]:
    """Every invitation of the consultation, oldest first, to whoever may see the appointment."""
    appointment = await _appointment(conn, principal, appointment_id)
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM {FROM} WHERE i.appointment_id = $1 ORDER BY i.created_at, i.id", appointment_id
    )
    await trail.record(
        conn,
        principal,
        action="search",
        resource_type="ConsultationInvitation",
        resource_id=None,
        patient_ids=[appointment["patient_id"]],
        facility_id=appointment["facility_id"],
    )
    return [to_invitation(r) for r in rows]


async def revoke(
    conn: Connection, principal: Principal, appointment_id: uuid.UUID, invitation_id: uuid.UUID
) -> Invitation:
    """Withdraw an invitation: its link stops working at once; a guest in the room is removed by
    the caller after this commits (realtime.guests)."""
    appointment = await _appointment(conn, principal, appointment_id)
    _require_inviter(principal, appointment)
    revoked = await conn.fetchval(
        """UPDATE consultation_invitations SET revoked_at = now(), revoked_by = $3
            WHERE id = $1 AND appointment_id = $2 AND revoked_at IS NULL RETURNING 1""",
        invitation_id,
        appointment_id,
        principal.user_id,
    )
    if revoked is None:
        exists = await conn.fetchval(
            "SELECT 1 FROM consultation_invitations WHERE id = $1 AND appointment_id = $2",
            invitation_id,
            appointment_id,
        )
        if exists is None:
            raise NotFound("invitation_not_found", "no such invitation for this consultation")
        raise Conflict("already_revoked", "this invitation was already revoked")
    await trail.record(
        conn,
        principal,
        action="revoke_invitation",
        resource_type="ConsultationInvitation",
        resource_id=invitation_id,
        patient_ids=[appointment["patient_id"]],
        facility_id=appointment["facility_id"],
    )
    return await _one(conn, invitation_id)


async def _one(conn: Connection, invitation_id: uuid.UUID) -> Invitation:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM {FROM} WHERE i.id = $1", invitation_id)
    if row is None:
        raise NotFound("invitation_not_found", "no such invitation")
    return to_invitation(row)
