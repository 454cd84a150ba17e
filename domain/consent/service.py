"""Consent to read the record: granted by the patient (app, SMS, USSD) or captured by a CHW with
a witness; revocable at any time. And break-glass: emergency access with a reason, time-limited,
flagged in the audit trail (the grant and every read under it carry purpose 'break_glass')."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import asyncpg
import msgspec

from domain import access
from domain.audit import trail
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.principal import Principal
from infra.db import Connection

Scope = Literal["network", "facility", "practitioner"]
Method = Literal["app", "sms", "ussd", "chw_witness"]
BREAK_GLASS_MAX = timedelta(hours=4)


class ConsentIn(msgspec.Struct, kw_only=True):
    scope: Scope
    facility_id: uuid.UUID | None = None  # network: defaults to the patient's home facility
    practitioner_id: uuid.UUID | None = None
    method: Method | None = None  # defaults to the caller's channel; staff must use chw_witness
    witness_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    expires_at: datetime | None = None


class Consent(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    patient_id: uuid.UUID
    scope: Scope
    facility_id: uuid.UUID | None
    practitioner_id: uuid.UUID | None
    method: Method
    witness_name: str | None
    recorded_by: uuid.UUID
    granted_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoke_reason: str | None


class BreakGlassIn(msgspec.Struct, kw_only=True):
    reason: Annotated[str, msgspec.Meta(min_length=10, max_length=2000)]
    minutes: Annotated[int, msgspec.Meta(ge=5, le=240)] = 60


class BreakGlass(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    patient_id: uuid.UUID
    reason: str
    started_at: datetime
    expires_at: datetime


_MANAGES = "only the patient or their health post manages consent"


def _to_consent(row: asyncpg.Record) -> Consent:
    return Consent(**{f: row[f] for f in Consent.__struct_fields__})


def _method(principal: Principal, data: ConsentIn) -> Method:
    if principal.is_staff or principal.is_system_admin:
        if data.method != "chw_witness" or not data.witness_name:
            raise InvalidInput(
                "witness_required", "a health worker records consent as chw_witness, naming the witness", field="method"
            )
        return "chw_witness"
    own: Method = "sms" if principal.channel == "sms" else "ussd" if principal.channel == "ussd" else "app"
    if data.method not in (None, own):
        raise InvalidInput("method_mismatch", f"consent given from this channel is recorded as {own}", field="method")
    return own


async def grant(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: ConsentIn) -> Consent:
    home = await access.require_patient_side(conn, principal, patient_id, _MANAGES)
    method = _method(principal, data)
    if data.scope == "practitioner":
        if data.practitioner_id is None or data.facility_id is not None:
            raise InvalidInput(
                "practitioner_required", "name the practitioner (and no facility)", field="practitioner_id"
            )
    elif data.practitioner_id is not None:
        raise InvalidInput("practitioner_not_allowed", "only a practitioner consent names one", field="practitioner_id")
    facility_id = data.facility_id or (home if data.scope == "network" else None)
    if data.scope == "facility" and facility_id is None:
        raise InvalidInput("facility_required", "name the facility", field="facility_id")
    if data.expires_at is not None and data.expires_at <= datetime.now(UTC):
        raise InvalidInput("expires_in_past", "a consent must expire in the future", field="expires_at")
    # An unknown grantee is refused by the foreign keys (domain.constraints: grantee_not_found).
    row = await conn.fetchrow(
        """INSERT INTO consents (id, patient_id, scope, facility_id, practitioner_id, method, witness_name,
                                 recorded_by, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *""",
        uuid.uuid4(),
        patient_id,
        data.scope,
        facility_id,
        data.practitioner_id,
        method,
        data.witness_name if method == "chw_witness" else None,
        principal.user_id,
        data.expires_at,
    )
    assert row is not None
    consent = _to_consent(row)
    await trail.record(
        conn, principal, action="consent", resource_type="Consent", resource_id=consent.id, patient_ids=[patient_id]
    )
    return consent


async def list_for_patient(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[Consent]:
    await access.require_patient_side(conn, principal, patient_id, _MANAGES)
    rows = await conn.fetch("SELECT * FROM consents WHERE patient_id = $1 ORDER BY granted_at, id", patient_id)
    await trail.record(
        conn, principal, action="search", resource_type="Consent", resource_id=None, patient_ids=[patient_id]
    )
    return [_to_consent(r) for r in rows]


async def get(conn: Connection, principal: Principal, consent_id: uuid.UUID) -> Consent:
    """One consent, for whoever may list the patient's consents (list_for_patient's rule)."""
    row = await conn.fetchrow("SELECT * FROM consents WHERE id = $1", consent_id)
    if row is None:
        raise NotFound("consent_not_found", "no such consent")
    await access.require_patient_side(conn, principal, row["patient_id"], _MANAGES)
    await trail.record(
        conn, principal, action="read", resource_type="Consent", resource_id=consent_id, patient_ids=[row["patient_id"]]
    )
    return _to_consent(row)


async def revoke(conn: Connection, principal: Principal, consent_id: uuid.UUID, reason: str | None) -> Consent:
    row = await conn.fetchrow("SELECT * FROM consents WHERE id = $1 FOR UPDATE", consent_id)
    if row is None:
        raise NotFound("consent_not_found", "no such consent")
    await access.require_patient_side(conn, principal, row["patient_id"], _MANAGES)
    if row["revoked_at"] is not None:
        raise Conflict("already_revoked", "this consent was already revoked")
    row = await conn.fetchrow(
        """UPDATE consents SET revoked_at = now(), revoked_by = $2, revoke_reason = $3 WHERE id = $1 RETURNING *""",
        consent_id,
        principal.user_id,
        reason,
    )
    assert row is not None
    await trail.record(
        conn,
        principal,
        action="revoke_consent",
        resource_type="Consent",
        resource_id=consent_id,
        patient_ids=[row["patient_id"]],
    )
    return _to_consent(row)


async def break_glass(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: BreakGlassIn) -> BreakGlass:
    """Any health worker in a clinical role may open it; the reason and the flag make it answerable."""
    if not principal.facilities_with(*access.CLINICAL_ROLES):
        raise Forbidden("role_required", "only a CHW, clinician or specialist may use break-glass access")
    if not await conn.fetchval("SELECT 1 FROM patients WHERE id = $1", patient_id):
        raise NotFound("patient_not_found", "no such patient", field="patient_id")
    facility = access.authoring_facility(principal)
    row = await conn.fetchrow(
        """INSERT INTO break_glass_grants (id, user_id, patient_id, reason, facility_id, expires_at)
           VALUES ($1, $2, $3, $4, $5, now() + make_interval(mins => $6)) RETURNING *""",
        uuid.uuid4(),
        principal.user_id,
        patient_id,
        data.reason,
        facility,
        data.minutes,
    )
    assert row is not None
    await trail.record(
        conn,
        principal,
        action="break_glass",
        resource_type="Patient",
        resource_id=patient_id,
        patient_ids=[patient_id],
        facility_id=facility,
        purpose="break_glass",
    )
    return BreakGlass(
        id=row["id"],
        patient_id=patient_id,
        reason=row["reason"],
        started_at=row["started_at"],
        expires_at=row["expires_at"],
    )
