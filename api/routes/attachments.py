"""Attachments to the record: upload an image or PDF (the raw bytes as the body), download it."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from api.deps import Caller, Config, Conn, DbPool
from api.uploads import raw_file
from domain.record import attachments
from domain.record.types import Entry
from infra.storage import BlobStore


def _blobs(request: Request[Any, Any, Any]) -> BlobStore:
    store: BlobStore = request.app.state.blobs
    return store


class AttachmentController(Controller):
    tags = ["record"]

    @post(
        "/v1/patients/{patient_id:uuid}/attachments",
        summary="Attach an image or PDF to the record (body: the file; Content-Type: its type)",
    )
    async def upload(
        self,
        patient_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Caller,
        settings: Config,
        title: Annotated[str | None, QueryParameter(max_length=200)] = None,
        encounter_id: FromQuery[uuid.UUID | None] = None,
    ) -> Entry:
        content_type, body = await raw_file(request, settings.attachment_max_bytes, "attach")
        return await attachments.add(
            conn, principal, _blobs(request), patient_id, body, content_type=content_type,
            title=title, encounter_id=encounter_id, max_bytes=settings.attachment_max_bytes,
        )  # fmt: skip

    @get(
        "/v1/record/{entry_id:uuid}/content",
        summary="The bytes of an attachment",
        media_type="application/octet-stream",
    )
    async def download(
        self,
        entry_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Caller,
        pool: DbPool,
    ) -> Response[bytes]:
        entry, data = await attachments.content(conn, pool, principal, _blobs(request), entry_id)
        return Response(
            content=data,
            media_type=entry.body["content_type"],
            # Health data: never in a shared cache; the hash names the bytes exactly.
            headers={
                "Cache-Control": "private, no-store",
                "ETag": f'"{entry.body["sha256"]}"',
                "X-Content-Type-Options": "nosniff",  # a browser renders it as the checked type, nothing else
            },
        )
