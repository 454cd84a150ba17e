"""Request and response bodies of the app API that are not domain types themselves."""

from __future__ import annotations

import base64
import uuid
from datetime import date, datetime, time
from typing import Annotated, Literal

import msgspec

from domain.booking.appointments import Appointment, Mode
from domain.booking.availability import RuleInput
from domain.errors import InvalidInput
from domain.fields import Phone, Reason, Token
from domain.patients import Patient


class OtpRequest(msgspec.Struct, kw_only=True):
    phone: Phone


class OtpSent(msgspec.Struct, kw_only=True):
    phone: str
    expires_in: int


class TokenRequest(msgspec.Struct, kw_only=True):
    phone: Phone
    code: Annotated[str, msgspec.Meta(max_length=16)]


class RefreshRequest(msgspec.Struct, kw_only=True):
    refresh_token: Token


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the OAuth token type, not a secret


class BookRequest(msgspec.Struct, kw_only=True):
    patient_id: uuid.UUID
    practitioner_id: uuid.UUID
    start: datetime
    mode: Mode = "video"
    reason: Reason | None = None


class RescheduleRequest(msgspec.Struct, kw_only=True):
    start: datetime
    reason: Reason | None = None


class CancelRequest(msgspec.Struct, kw_only=True):
    reason: Reason | None = None


class AvailabilityIn(msgspec.Struct, kw_only=True):
    facility_id: uuid.UUID
    rules: Annotated[list[RuleInput], msgspec.Meta(max_length=100)]  # a week of rules at one facility


class RuleOut(msgspec.Struct, kw_only=True):
    facility_id: uuid.UUID
    timezone: str
    weekday: int
    start: time
    end: time
    slot_minutes: int
    modes: list[str]
    valid_from: date
    valid_until: date | None


class ExceptionIn(msgspec.Struct, kw_only=True):
    starts_at: datetime
    ends_at: datetime
    reason: Reason | None = None


class SlotOut(msgspec.Struct, kw_only=True):
    practitioner_id: uuid.UUID
    facility_id: uuid.UUID
    start: datetime
    end: datetime
    start_local: str
    end_local: str
    timezone: str
    modes: list[str]


class SlotPage(msgspec.Struct, kw_only=True):
    items: list[SlotOut]


class AppointmentPage(msgspec.Struct, kw_only=True):
    items: list[Appointment]
    next_cursor: str | None


class PatientPage(msgspec.Struct, kw_only=True):
    items: list[Patient]
    next_cursor: str | None


class ReferralTargetIn(msgspec.Struct, kw_only=True):
    facility_id: uuid.UUID


def encode_cursor(*parts: object) -> str:
    raw = "|".join(p.isoformat() if isinstance(p, datetime) else str(p) for p in parts)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def invalid_cursor() -> InvalidInput:
    return InvalidInput("invalid_cursor", "the cursor is not one this server issued", field="cursor")


def decode_cursor(cursor: str, arity: int) -> list[str]:
    try:
        parts = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
    except (ValueError, UnicodeDecodeError):
        parts = []
    if len(parts) != arity:
        raise invalid_cursor()
    return parts
