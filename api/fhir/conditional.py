"""Versions on the wire for FHIR reads: ETag W/"{versionId}" and Last-Modified from a resource's
meta, and conditional reads (If-None-Match, If-Modified-Since) answered 304 Not Modified.

The read runs (and is audited) as any read; only the answer shrinks to headers when the client's
copy is current. If-None-Match wins over If-Modified-Since when both are sent (RFC 9110 13.2.2).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from litestar import Response
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.asgi_util import header
from api.fhir.bundle import FHIR_JSON
from api.fhir.errors import is_fhir_path

_UNVERSIONED = ("Bundle", "OperationOutcome", "CapabilityStatement", "Parameters")
# What a 304 keeps of the 200 it replaces (RFC 9110 15.4.5): validators and caching metadata.
_KEPT_ON_304 = {b"etag", b"last-modified", b"cache-control", b"vary", b"x-request-id", b"content-location"}


def etag(version_id: str) -> str:
    return f'W/"{version_id}"'


def http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def version_headers(resource: dict[str, Any]) -> dict[str, str]:
    """ETag and Last-Modified of a versioned resource; none for anything else."""
    meta = resource.get("meta")
    if resource.get("resourceType") in _UNVERSIONED or not isinstance(meta, dict) or "versionId" not in meta:
        return {}
    headers = {"ETag": etag(str(meta["versionId"]))}
    updated = meta.get("lastUpdated")
    if isinstance(updated, str):
        updated = datetime.fromisoformat(updated.replace("Z", "+00:00"))
    if isinstance(updated, datetime):
        headers["Last-Modified"] = http_date(updated)
    return headers


async def stamp_versions(response: Any) -> Any:
    """after_request: a FHIR resource leaves with its validators (a handler's own win). The hook
    sees every handler's answer (files, raw ASGI responses): only a Response of a dict is read."""
    if (
        isinstance(response, Response)
        and response.media_type == FHIR_JSON
        and isinstance(response.content, dict)
        and response.status_code in (200, 201)
    ):
        for name, value in version_headers(response.content).items():
            if name.lower() not in {k.lower() for k in response.headers}:
                response.headers[name] = value
    return response


def _weak(tag: str) -> str:
    return tag.strip().removeprefix("W/")


def not_modified(scope: Scope, headers: MutableScopeHeaders) -> bool:
    """Whether the client's copy (If-None-Match, else If-Modified-Since) is the current one."""
    current = headers.get("etag")
    if (wanted := header(scope, b"if-none-match")) is not None:
        tags = [_weak(t) for t in wanted.split(",")]
        return current is not None and ("*" in tags or _weak(current) in tags)
    modified, since = headers.get("last-modified"), header(scope, b"if-modified-since")
    if modified is None or since is None:
        return False
    try:
        return parsedate_to_datetime(modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):  # an invalid date is ignored (RFC 9110 13.1.3)
        return False


class ConditionalReadMiddleware:
    """GET and HEAD under /fhir with a validator: a 200 whose ETag or Last-Modified matches
    becomes a 304 without a body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        conditional = (
            scope["type"] == ScopeType.HTTP
            and scope.get("method") in ("GET", "HEAD")
            and is_fhir_path(scope.get("path", ""))
            and (header(scope, b"if-none-match") is not None or header(scope, b"if-modified-since") is not None)
        )
        if not conditional:
            await self.app(scope, receive, send)
            return
        replaced = False

        async def send_conditionally(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = MutableScopeHeaders(message)
                if not_modified(scope, headers):
                    replaced = True
                    kept = [(k, v) for k, v in message.get("headers", []) if k.lower() in _KEPT_ON_304]
                    message = {"type": "http.response.start", "status": 304, "headers": kept}
            elif message["type"] == "http.response.body" and replaced:
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, receive, send_conditionally)
