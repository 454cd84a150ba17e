"""HTTP side of the video consultation: ICE servers for the caller, and the specialist's page."""

from __future__ import annotations

from importlib import resources

from litestar import Response, get

from api.deps import Caller, Config
from api.transaction import NO_TRANSACTION
from realtime.turn import IceServers, ice_servers_for


@get("/v1/rtc/ice-servers", tags=["realtime"], summary="STUN/TURN servers with time-limited credentials")
async def get_ice_servers(principal: Caller, settings: Config) -> IceServers:
    return ice_servers_for(settings, str(principal.user_id))


_PAGE = resources.files("realtime") / "static" / "consult.html"


@get(
    "/rtc/consult",
    tags=["realtime"],
    summary="The specialist's consultation page",
    include_in_schema=False,
    opt={"exclude_from_auth": True, **NO_TRANSACTION},
)
async def consult_page() -> Response[bytes]:
    # The page carries no data: it reads the token and appointment from the URL fragment
    # (never sent to the server) and does everything else through the authenticated API.
    return Response(
        _PAGE.read_bytes(),
        media_type="text/html",  # Litestar appends "; charset=utf-8" to every text/* type
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; "
            "script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; media-src 'self' blob:; "
            "connect-src 'self' ws: wss:; img-src 'self' data:",
        },
    )


_CALL_FILES_JS = resources.files("realtime") / "static" / "call-files.js"


@get(
    "/rtc/call-files.js",
    tags=["realtime"],
    summary="The consultation page's files in the chat (attach, download, file into record)",
    include_in_schema=False,
    opt={"exclude_from_auth": True, **NO_TRANSACTION},
)
async def call_files_script() -> Response[bytes]:
    # Static code, no data: the page's own token does the authenticated calls.
    return Response(
        _CALL_FILES_JS.read_bytes(),
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
