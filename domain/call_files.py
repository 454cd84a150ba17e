"""Files shared in a video consultation, and filing one into the patient's record.

Who shares and reads: the consultation's members (patient, the health worker who booked it, the
specialist: booking.consultation.member), never a guest of the call: a file shown in a call may be
a result, and a guest has no record access. A file is shared while the room is open; members read
it afterwards too. It is checked exactly as a record attachment is (record.attachments.check).

Shared files are not the record: the specialist files one into it (an attachment of the
consultation's patient, in the consultation's encounter when there is one), with the record's
rules for writing (role, facility, consent) and its audit. Filing twice gives the first entry.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Any

import msgspec

from domain import access
from domain.audit import trail
from domain.booking import consultation
from domain.errors import Forbidden, NotFound
from domain.principal import Principal
from domain.record import attachments, service, store
from domain.record.types import Entry
from infra.db import Connection
from infra.storage import BlobStore


class CallFile(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    appointment_id: uuid.UUID
    name: str
    content_type: str
    size: int
    uploaded_by: uuid.UUID
    uploader_name: str
    created_at: datetime
    filed_entry_id: uuid.UUID | None


def _name(given: str | None, content_type: str) -> str:
    """A name to show: printable, one line, at most 200 characters (a default if none is left)."""
    kept = "".join(c for c in (given or "") if unicodedata.category(c)[0] != "C").strip()[:200]
    return kept or ("document.pdf" if content_type == "application/pdf" else "image")


def _from(row: Any) -> CallFile:
    return CallFile(**{f: row[f] for f in CallFile.__struct_fields__})


async def _audit(
    conn: Connection, principal: Principal, action: trail.Action, file: CallFile, patient: uuid.UUID
) -> None:
    await trail.record(
        conn, principal, action=action, resource_type="Binary", resource_id=file.id, patient_ids=[patient],
        facility_id=access.authoring_facility(principal),
    )  # fmt: skip


async def share(
    conn: Connection,
    principal: Principal,
    blobs: BlobStore,
    appointment_id: uuid.UUID,
    data: bytes,
    *,
    content_type: str,
    name: str | None,
    max_bytes: int,
) -> CallFile:
    appointment, side = await consultation.participant(conn, principal, appointment_id)
    attachments.check(data, content_type, max_bytes)
    uploader = await consultation.display_name(conn, appointment, principal, side)
    key = await blobs.put(data)
    row = await conn.fetchrow(
        """INSERT INTO call_files (id, appointment_id, uploaded_by, uploader_name, name, content_type, size, sha256)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
        uuid.uuid4(), appointment.id, principal.user_id, uploader, _name(name, content_type), content_type,
        len(data), key,
    )  # fmt: skip
    shared = _from(row)
    await _audit(conn, principal, "create", shared, appointment.patient_id)
    return shared


async def _row(conn: Connection, appointment_id: uuid.UUID, file_id: uuid.UUID, *, lock: bool = False) -> Any:
    row = await conn.fetchrow(
        "SELECT * FROM call_files WHERE id = $1 AND appointment_id = $2" + (" FOR UPDATE" if lock else ""),
        file_id,
        appointment_id,
    )
    if row is None:
        raise NotFound("call_file_not_found", "no such file in this consultation")
    return row


async def content(
    conn: Connection, principal: Principal, blobs: BlobStore, appointment_id: uuid.UUID, file_id: uuid.UUID
) -> tuple[CallFile, bytes]:
    """The file's bytes, for a member of the consultation (audited as a read)."""
    appointment, _ = await consultation.member(conn, principal, appointment_id)
    row = await _row(conn, appointment.id, file_id)
    data = await blobs.get(row["sha256"])
    if data is None:
        raise NotFound("call_file_missing", "the file's bytes are not in the store")
    shared = _from(row)
    await _audit(conn, principal, "read", shared, appointment.patient_id)
    return shared, data


async def file_into_record(
    conn: Connection, principal: Principal, appointment_id: uuid.UUID, file_id: uuid.UUID
) -> Entry:
    """The specialist's one action: the shared file becomes an attachment of the patient's record."""
    appointment, side = await consultation.member(conn, principal, appointment_id)
    if side != "specialist":
        raise Forbidden("specialist_only", "only the consultation's specialist files a shared file into the record")
    row = await _row(conn, appointment.id, file_id, lock=True)  # two clicks file it once
    home = await access.require_can_write_record(conn, principal, appointment.patient_id)
    if row["filed_entry_id"] is not None:
        filed = await store.head(conn, row["filed_entry_id"])
        if filed is not None:
            return filed
    encounter = await conn.fetchval(
        """SELECT id FROM record_entries WHERE kind = 'encounter' AND appointment_id = $1 AND status = 'current'
            ORDER BY recorded_at DESC LIMIT 1""",
        appointment.id,
    )
    body: dict[str, object] = {
        "content_type": row["content_type"], "size": row["size"], "sha256": row["sha256"], "title": row["name"],
        "call_file_id": str(row["id"]),
    }  # fmt: skip
    entry = await service.insert_new(
        conn, principal, appointment.patient_id, "attachment", body=body, code=row["content_type"],
        encounter_id=encounter, home=home, appointment_id=appointment.id, appointment_facility=appointment.facility_id,
    )  # fmt: skip
    await conn.execute(
        "UPDATE call_files SET filed_entry_id = $2, filed_by = $3, filed_at = now() WHERE id = $1",
        row["id"],
        entry.id,
        principal.user_id,
    )
    return entry


async def list_for(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> list[CallFile]:
    """What was shared in the consultation, oldest first, for its members."""
    appointment, _ = await consultation.member(conn, principal, appointment_id)
    rows = await conn.fetch(
        "SELECT * FROM call_files WHERE appointment_id = $1 ORDER BY created_at, id LIMIT 200", appointment.id
    )
    await trail.record(
        conn, principal, action="search", resource_type="Binary", resource_id=None,
        patient_ids=[appointment.patient_id], facility_id=access.authoring_facility(principal),
    )  # fmt: skip
    return [_from(r) for r in rows]
