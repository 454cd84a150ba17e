"""Attachments to the record: upload an image or PDF (the raw bytes as the body), download it."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.status_codes import HTTP_413_REQUEST_ENTITY_TOO_LARGE, HTTP_415_UNSUPPORTED_MEDIA_TYPE

from api.deps import Caller, Config, Conn, DbPool
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
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        # What every other route answers for a body it does not take, or one over its limit:
        # 415 and 413, before the domain's own checks of the bytes.
        if content_type not in attachments.MEDIA_TYPES:
            given = content_type or "no Content-Type"
            detail = f"attach one of {', '.join(attachments.MEDIA_TYPES)} (the raw file), not {given}"
            raise HTTPException(status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail=detail)
        body = await request.body()
        if len(body) > settings.attachment_max_bytes:
            detail = f"attachments are at most {settings.attachment_max_bytes} bytes"
            raise HTTPException(status_code=HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=detail)
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
