"""What every USSD step shares: the turn's context, the outcomes a step may have (go on, ask
again, end), and the small readers both screens and actions use."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from domain import patients
from domain.consent import service as consent
from domain.principal import Principal
from infra.db import Connection
from sms.ussd.session import Session

SLOTS_SHOWN = 5
APPOINTMENTS_SHOWN = 5
CONSULTATIONS_SHOWN = 20  # read before filtering to the post's own patients


@dataclass
class Context:
    conn: Connection
    principal: Principal
    session: Session
    default_region: str

    @property
    def patient_id(self) -> uuid.UUID:
        assert self.session.patient_id is not None
        return self.session.patient_id

    @property
    def language(self) -> str:
        return self.session.language


@dataclass(frozen=True)
class Goto:
    screen: str


@dataclass(frozen=True)
class End:
    message: str  # catalogue id
    values: dict[str, str]
    fixed: dict[str, str]


@dataclass(frozen=True)
class Again:
    """Ask the same screen again with a notice (a wrong PIN, two PINs that differ)."""

    notice: str


Outcome = Goto | End | Again


def end(message: str, fixed: dict[str, str] | None = None, **values: str) -> End:
    return End(message, values, fixed or {})


def when(instant: datetime, timezone: str, language: str) -> str:
    """A slot's start on the facility's clock: weekday, day/month and time, in the language."""
    return format_datetime(instant, "EEE dd/MM HH:mm", tzinfo=ZoneInfo(timezone), locale=language)


class Chosen(NamedTuple):
    practitioner_id: uuid.UUID
    start: datetime
    facility_id: uuid.UUID
    timezone: str
    modes: tuple[str, ...]


def parse_slot(value: str) -> Chosen:
    practitioner_id, start, facility_id, timezone, modes = value.split("|")
    return Chosen(
        uuid.UUID(practitioner_id),
        datetime.fromisoformat(start),
        uuid.UUID(facility_id),
        timezone,
        tuple(modes.split(",")),
    )


def patient_name(patient: patients.Patient) -> str:
    return patient.names[0].text if patient.names else "?"


async def active_network_consents(ctx: Context) -> list[consent.Consent]:
    now = datetime.now(UTC)
    return [
        c
        for c in await consent.list_for_patient(ctx.conn, ctx.principal, ctx.patient_id)
        if c.scope == "network" and c.revoked_at is None and (c.expires_at is None or c.expires_at > now)
    ]
