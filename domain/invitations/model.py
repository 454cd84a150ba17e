"""An invitation of a guest into a video consultation, as stored and as shown.

The link's token and the guest's browser key are secrets of the guest: only their SHA-256
digests are stored (both are random and long, so a plain digest is as good as a slow hash).
An invitation's state follows from its timestamps and its consultation: pending (sent, not
opened), opened (claimed by one browser), joined (that browser entered the room), revoked, or
expired (the consultation's window closed, or the consultation did).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec

from domain.booking.consultation import JOIN_CLOSES

Role = Literal["family_member", "interpreter", "specialist"]
Locale = Literal["km", "vi", "fr", "en"]
State = Literal["pending", "opened", "joined", "revoked", "expired"]

MAX_LIVE = 4  # guests a consultation may have invited at once (a mesh call on a cheap phone)
TOKEN_BYTES = 16  # 128 random bits: unguessable, and the link stays short in an SMS
OPEN_STATUSES = ("booked", "checked_in", "in_progress")


class Invitation(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    appointment_id: uuid.UUID
    role: Role
    language: str | None  # the language an interpreter interprets (ISO 639)
    locale: Locale  # the language of the guest's SMS and page
    name: str
    phone: str
    state: State
    invited_by: uuid.UUID
    created_at: datetime
    opened_at: datetime | None
    joined_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime
    sms_status: str | None  # the SMS ledger's state of the invitation's message


def new_secret() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


# Every query that shows invitations selects these, from `consultation_invitations i` joined to
# `appointments a` and, left, to `sms_messages s`.
COLUMNS = """i.id, i.appointment_id, i.role, i.language, i.locale, i.name, i.phone, i.invited_by, i.created_at,
             i.opened_at, i.joined_at, i.revoked_at, i.device_hash, a.status AS appointment_status,
             a.end_at, a.patient_id, a.facility_id, s.status AS sms_status, now() AS now"""
FROM = """consultation_invitations i JOIN appointments a ON a.id = i.appointment_id
          LEFT JOIN sms_messages s ON s.id = i.sms_id"""


def state_of(row: Any) -> State:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["appointment_status"] not in OPEN_STATUSES or row["now"] > row["end_at"] + JOIN_CLOSES:
        return "expired"
    if row["joined_at"] is not None:
        return "joined"
    return "opened" if row["opened_at"] is not None else "pending"


def to_invitation(row: Any) -> Invitation:
    return Invitation(
        id=row["id"],
        appointment_id=row["appointment_id"],
        role=row["role"],
        language=row["language"],
        locale=row["locale"],
        name=row["name"],
        phone=row["phone"],
        state=state_of(row),
        invited_by=row["invited_by"],
        created_at=row["created_at"],
        opened_at=row["opened_at"],
        joined_at=row["joined_at"],
        revoked_at=row["revoked_at"],
        expires_at=row["end_at"] + JOIN_CLOSES,
        sms_status=row["sms_status"],
    )
