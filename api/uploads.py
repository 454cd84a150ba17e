"""A route that takes one file as its raw body (a record attachment, a file shared in a call)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_413_REQUEST_ENTITY_TOO_LARGE, HTTP_415_UNSUPPORTED_MEDIA_TYPE

from domain.record import attachments


async def raw_file(request: Request[Any, Any, Any], max_bytes: int, verb: str) -> tuple[str, bytes]:
    """(media type, bytes) of an image or PDF sent as the body, its type in Content-Type.

    What every other route answers for a body it does not take, or one over its limit: 415 and
    413, before the domain's own checks of the bytes (which `verb`, "attach" or "share", names)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in attachments.MEDIA_TYPES:
        given = content_type or "no Content-Type"
        detail = f"{verb} one of {', '.join(attachments.MEDIA_TYPES)} (the raw file), not {given}"
        raise HTTPException(status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail=detail)
    body = await request.body()
    if len(body) > max_bytes:
        raise HTTPException(
            status_code=HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=f"files are at most {max_bytes} bytes"
        )
    return content_type, body
