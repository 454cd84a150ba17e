"""HTTP side of files shared in a video consultation (domain.call_files): upload, list, download,
and the specialist's "file into record".

The bytes travel over HTTP, never as WebSocket frames (a frame is capped at 64 KiB, and a file
belongs in the blob store, checked and audited, not in the room's log). Once the upload commits,
the room hears of it: a `file` message (id, name, type, size, who shared it) to each of the
consultation's members in the room, kept in the room's log so a page that reconnects sees it too;
guests are not told (they may not read it). Filing it into the record is announced as `file_filed`.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_200_OK

from api.deps import Caller, Config, Conn
from api.transaction import after_commit
from api.uploads import raw_file
from domain import call_files
from domain.call_files import CallFile
from domain.record.types import Entry
from infra.storage import BlobStore
from realtime import messages as m
from realtime.rooms import Rooms


class CallFileList(msgspec.Struct, kw_only=True):
    items: list[CallFile]


async def announce(rooms: Rooms, appointment_id: uuid.UUID, message: dict[str, Any]) -> None:
    """To each member of the consultation in its room (not its guests), kept for a resume."""
    room = str(appointment_id)
    for peer_id, peer in (await rooms.peers(room)).items():
        if peer.side == "guest":
            continue
        await rooms.append_and_publish(
            room, "server", peer_id, m.encode(message), m.encode({"from": "server", "to": peer_id, "msg": message})
        )


def _announce_after_commit(request: Request[Any, Any, Any], appointment_id: uuid.UUID, message: dict[str, Any]) -> None:
    """What the request changed is told to the room once it is committed, never before."""
    after_commit(request.scope, partial(announce, request.app.state.rtc_rooms, appointment_id, message))


def file_message(shared: CallFile) -> dict[str, Any]:
    return {
        "type": "file",
        "file": {
            "id": str(shared.id),
            "name": shared.name,
            "content_type": shared.content_type,
            "size": shared.size,
            "by": shared.uploader_name,
        },
    }


class CallFileController(Controller):
    path = "/v1/appointments/{appointment_id:uuid}/files"
    tags = ["realtime"]

    @post("/", summary="Share an image or PDF in the consultation (body: the file; Content-Type: its type)")
    async def share(
        self,
        request: Request[Any, Any, Any],
        appointment_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
        settings: Config,
        name: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> CallFile:
        content_type, body = await raw_file(request, settings.attachment_max_bytes, "share")
        blobs: BlobStore = request.app.state.blobs
        shared = await call_files.share(
            conn, principal, blobs, appointment_id, body, content_type=content_type, name=name,
            max_bytes=settings.attachment_max_bytes,
        )  # fmt: skip
        _announce_after_commit(request, appointment_id, file_message(shared))
        return shared

    @get("/", summary="The files shared in the consultation, oldest first")
    async def list_files(self, appointment_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> CallFileList:
        return CallFileList(items=await call_files.list_for(conn, principal, appointment_id))

    @get(
        "/{file_id:uuid}/content",
        summary="The bytes of a shared file (for the consultation's members)",
        media_type="application/octet-stream",
    )
    async def download(
        self,
        request: Request[Any, Any, Any],
        appointment_id: FromPath[uuid.UUID],
        file_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
    ) -> Response[bytes]:
        blobs: BlobStore = request.app.state.blobs
        shared, data = await call_files.content(conn, principal, blobs, appointment_id, file_id)
        return Response(
            content=data,
            media_type=shared.content_type,
            headers={
                "Cache-Control": "private, no-store",
                "X-Content-Type-Options": "nosniff",
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(shared.name)}",
            },
        )

    @post(
        "/{file_id:uuid}/file-into-record",
        status_code=HTTP_200_OK,
        summary="The specialist files a shared file into the patient's record (once: again gives the same entry)",
    )
    async def file_into_record(
        self,
        request: Request[Any, Any, Any],
        appointment_id: FromPath[uuid.UUID],
        file_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
    ) -> Entry:
        entry = await call_files.file_into_record(conn, principal, appointment_id, file_id)
        filed = {"type": "file_filed", "file": str(file_id), "entry": str(entry.id)}
        _announce_after_commit(request, appointment_id, filed)
        return entry
