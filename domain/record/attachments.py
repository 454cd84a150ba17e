"""Attachments: images and PDFs added to the record. The type is checked against the file's own
first bytes (not only the declared Content-Type), and the size against the configured limit;
the bytes go to the blob store before the entry is written, so an entry never names missing bytes
(an upload whose transaction then fails leaves an unreferenced blob, which is harmless)."""

from __future__ import annotations

import uuid

from domain import access
from domain.errors import InvalidInput, NotFound
from domain.principal import Principal
from domain.record import service
from domain.record.types import Entry
from infra.db import Connection, Pool
from infra.storage import BlobStore

# Declared type -> the magic bytes a real file of that type starts with.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/webp": (b"RIFF",),
    "application/pdf": (b"%PDF-",),
}


MEDIA_TYPES = tuple(sorted(_SIGNATURES))  # what may be attached, by Content-Type


def check(data: bytes, content_type: str, max_bytes: int) -> None:
    if not data:
        raise InvalidInput("empty_attachment", "the file is empty")
    if len(data) > max_bytes:
        raise InvalidInput("attachment_too_large", f"attachments are at most {max_bytes} bytes")
    signatures = _SIGNATURES.get(content_type)
    if signatures is None:
        raise InvalidInput(
            "unsupported_media_type", f"attach one of {', '.join(sorted(_SIGNATURES))}", field="Content-Type"
        )
    if not data.startswith(signatures) or (content_type == "image/webp" and data[8:12] != b"WEBP"):
        raise InvalidInput("content_mismatch", f"the file is not a {content_type}", field="Content-Type")


async def add(
    conn: Connection,
    principal: Principal,
    blobs: BlobStore,
    patient_id: uuid.UUID,
    data: bytes,
    *,
    content_type: str,
    title: str | None,
    encounter_id: uuid.UUID | None,
    max_bytes: int,
) -> Entry:
    home = await access.require_can_write_record(conn, principal, patient_id)
    check(data, content_type, max_bytes)
    await service.check_encounter(conn, patient_id, encounter_id)
    key = await blobs.put(data)
    body = {"content_type": content_type, "size": len(data), "sha256": key, **({"title": title} if title else {})}
    return await service.insert_new(
        conn, principal, patient_id, "attachment", body=body, code=content_type, encounter_id=encounter_id, home=home
    )


async def content(
    conn: Connection, pool: Pool, principal: Principal, blobs: BlobStore, entry_id: uuid.UUID
) -> tuple[Entry, bytes]:
    """The current version's bytes, for a reader the record's rules allow (audited as a read)."""
    entry = await service.get(conn, principal, entry_id, pool=pool)
    if entry.kind != "attachment":
        raise NotFound("attachment_not_found", "no such attachment")
    data = await blobs.get(entry.body["sha256"])
    if data is None:
        raise NotFound("attachment_missing", "the attachment's bytes are not in the store")
    return entry, data
