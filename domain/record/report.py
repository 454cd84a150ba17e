"""A completed consultation's report: what it says comes from the shared record (read with the
record's rules and audited), and the PDF, once rendered by the caller, is kept as an attachment
of the patient's record, one per consultation, with a link for the patient.

Only the consultation's specialist asks for it, once the consultation is completed. Asking again
gives the first report (nothing is rendered, stored or sent twice); a correction of the results
is a new record version, and the report states the record as it was when it was made.

The patient's link carries a random token, kept here as a SHA-256 digest only; it opens the PDF
with the patient's results PIN (sms.ussd.pin, wrong tries counted and locked there) until it
expires. Ids only, no health detail, go to the outbox (`record.report_ready`): the referring
health post hears that a report is ready and reads it in the app.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from domain import access
from domain.booking.model import load_appointment
from domain.errors import Conflict, Forbidden, NotFound
from domain.principal import Principal
from domain.record import service
from domain.record.types import Entry
from infra.db import Connection, Pool
from infra.outbox import enqueue
from infra.storage import BlobStore

LINK_LIFETIME = timedelta(days=30)
_REFERRAL_STATES = ("accepted", "answered", "declined")


class Finding(msgspec.Struct, kw_only=True):
    code: str | None
    text: str


class Medication(msgspec.Struct, kw_only=True):
    drug: str
    code: str | None
    dose: str
    route: str
    frequency: str
    days: int
    instructions: str | None = None


class ReportContent(msgspec.Struct, kw_only=True):
    appointment_id: uuid.UUID
    patient_id: uuid.UUID
    patient_name: str
    patient_phone: str | None
    language: str  # the patient's
    facility: str
    timezone: str  # the consultation's facility's
    specialist: str
    start: datetime
    reason: str | None
    findings: list[Finding]
    prescriptions: list[Medication]
    follow_up: list[str]  # plan notes
    advice: list[str]  # advice notes
    referral_status: str | None  # the referral this consultation answered, if any
    referral_note: str | None
    encounter_id: uuid.UUID | None


class Report(msgspec.Struct, kw_only=True):
    appointment_id: uuid.UUID
    entry_id: uuid.UUID
    language: str
    created_at: datetime
    sent_to_patient: bool


def _finding(entry: Entry) -> Finding:
    body = entry.body
    if entry.kind == "condition":
        text = body.get("display") or body["code"]
        return Finding(code=body["code"], text=text + (f": {body['note']}" if body.get("note") else ""))
    if body.get("components"):
        value = " / ".join(f"{c['value']:g}" for c in body["components"]) + f" {body['components'][0]['unit']}"
    else:
        value = f"{body['value']:g} {body['unit']}"
    return Finding(code=body.get("code"), text=f"{body.get('display') or body.get('code')}: {value}")


def _medication(body: dict[str, Any]) -> Medication:
    return Medication(
        drug=body["drug"], code=body.get("drug_code"), dose=body["dose"], route=body["route"],
        frequency=body["frequency"], days=body["duration_days"], instructions=body.get("instructions"),
    )  # fmt: skip


async def gather(conn: Connection, pool: Pool, principal: Principal, appointment_id: uuid.UUID) -> ReportContent:
    """The report's content, for the consultation's specialist, from the record (a read, audited)."""
    try:
        appointment = await load_appointment(conn, appointment_id)
    except NotFound:
        raise NotFound("appointment_not_found", "no such appointment") from None
    if principal.practitioner_id is None or principal.practitioner_id != appointment.practitioner_id:
        raise Forbidden("specialist_only", "only the consultation's specialist writes its report")
    if appointment.status != "completed":
        raise Conflict("consultation_not_completed", "complete the consultation (with its results) first")
    entries = await service.patient_record(conn, principal, appointment.patient_id, pool=pool, limit=500)
    encounter = next((e for e in entries if e.kind == "encounter" and e.appointment_id == appointment.id), None)
    mine = [e for e in reversed(entries) if encounter is not None and e.encounter_id == encounter.id]
    notes = [(e.body.get("category"), e.body["text"]) for e in mine if e.kind == "note"]
    row = await conn.fetchrow(
        """SELECT coalesce((SELECT n->>'text' FROM jsonb_array_elements(p.names) n WHERE n->>'use' = 'usual' LIMIT 1),
                           p.names->0->>'text') AS patient, p.phone, p.preferred_language,
                  f.name AS facility, f.timezone, pr.name AS specialist,
                  r.status AS referral_status, r.outcome_note
             FROM patients p, facilities f, practitioners pr
             LEFT JOIN referrals r ON r.appointment_id = $4
            WHERE p.id = $1 AND f.id = $2 AND pr.id = $3""",
        appointment.patient_id, appointment.facility_id, appointment.practitioner_id, appointment.id,
    )  # fmt: skip
    assert row is not None  # the appointment's foreign keys
    return ReportContent(
        appointment_id=appointment.id, patient_id=appointment.patient_id, patient_name=row["patient"] or "",
        patient_phone=row["phone"], language=row["preferred_language"], facility=row["facility"],
        timezone=row["timezone"], specialist=row["specialist"], start=appointment.start,
        reason=(encounter.body.get("reason") if encounter else None) or appointment.reason,
        findings=[_finding(e) for e in mine if e.kind in ("condition", "observation")],
        prescriptions=[_medication(e.body) for e in mine if e.kind == "prescription"],
        follow_up=[text for category, text in notes if category == "plan"],
        advice=[text for category, text in notes if category != "plan"],
        referral_status=row["referral_status"] if row["referral_status"] in _REFERRAL_STATES else None,
        referral_note=row["outcome_note"], encounter_id=encounter.id if encounter else None,
    )  # fmt: skip


async def existing(conn: Connection, appointment_id: uuid.UUID) -> Report | None:
    """The consultation's report if made. Held until the transaction ends, so two requests for
    one report (a double tap) make it once: the second waits, then finds the first's."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('consultation_report:' || $1::uuid::text, 0))", appointment_id
    )
    row = await conn.fetchrow(
        "SELECT entry_id, language, created_at, sms_id FROM consultation_reports WHERE appointment_id = $1",
        appointment_id,
    )
    if row is None:
        return None
    return Report(
        appointment_id=appointment_id, entry_id=row["entry_id"], language=row["language"],
        created_at=row["created_at"], sent_to_patient=row["sms_id"] is not None,
    )  # fmt: skip


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def store(
    conn: Connection, principal: Principal, blobs: BlobStore, content: ReportContent, pdf: bytes
) -> tuple[Report, str | None]:
    """Keep the PDF as a record attachment of the consultation and announce it; (the report, the
    patient's link token, None when the patient has no phone to send it to)."""
    home = await access.require_can_write_record(conn, principal, content.patient_id)
    key = await blobs.put(pdf)
    body: dict[str, object] = {
        "content_type": "application/pdf", "size": len(pdf), "sha256": key, "title": "Consultation report",
        "report_for": str(content.appointment_id), "language": content.language,
    }  # fmt: skip
    entry = await service.insert_new(
        conn, principal, content.patient_id, "attachment", body=body, code="application/pdf",
        encounter_id=content.encounter_id, home=home,
    )  # fmt: skip
    token = secrets.token_urlsafe(24) if content.patient_phone else None
    created = await conn.fetchval(
        """INSERT INTO consultation_reports (appointment_id, patient_id, entry_id, language, created_by, link_hash,
                                             link_expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at""",
        content.appointment_id, content.patient_id, entry.id, content.language, principal.user_id,
        None if token is None else _digest(token), None if token is None else datetime.now(UTC) + LINK_LIFETIME,
    )  # fmt: skip
    await enqueue(
        conn,
        "record.report_ready",
        {
            "patient_id": str(content.patient_id),
            "appointment_id": str(content.appointment_id),
            "entry_id": str(entry.id),
        },
    )
    report = Report(
        appointment_id=content.appointment_id, entry_id=entry.id, language=content.language, created_at=created,
        sent_to_patient=token is not None,
    )  # fmt: skip
    return report, token


async def attach_sms(conn: Connection, appointment_id: uuid.UUID, sms_id: uuid.UUID) -> None:
    await conn.execute("UPDATE consultation_reports SET sms_id = $2 WHERE appointment_id = $1", appointment_id, sms_id)


class LinkedReport(msgspec.Struct, kw_only=True):
    appointment_id: uuid.UUID
    patient_id: uuid.UUID
    entry_id: uuid.UUID
    language: str


async def by_link(conn: Connection, token: str) -> LinkedReport:
    """The report a link opens, if the link is good (the PIN is checked by the caller)."""
    row = await conn.fetchrow(
        """SELECT appointment_id, patient_id, entry_id, language, link_expires_at FROM consultation_reports
            WHERE link_hash = $1""",
        _digest(token),
    )
    if row is None:
        raise NotFound("report_link_not_found", "this link opens no report")
    if row["link_expires_at"] <= datetime.now(UTC):
        # The report's language goes with the refusal: the page says it in the patient's words.
        raise Conflict(
            "report_link_expired", "this link has expired: open the report in the app", language=row["language"]
        )
    return LinkedReport(
        appointment_id=row["appointment_id"], patient_id=row["patient_id"], entry_id=row["entry_id"],
        language=row["language"],
    )  # fmt: skip
