"""HTTP side of the video consultation: ICE servers for the caller, and the specialist's page."""

from __future__ import annotations

from importlib import resources

from litestar import Response, get
from litestar.params import FromPath

from api.deps import Caller, Config
from api.transaction import NO_TRANSACTION
from domain.errors import NotFound
from realtime.guest_page import FALLBACK, LANGUAGES, texts
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
            "script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; media-src 'self' blob:; "
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


_STATIC = resources.files("realtime") / "static"
_PRECALL = {"precall.js": "text/javascript", "precall.css": "text/css"}
_PUBLIC = {"exclude_from_auth": True, **NO_TRANSACTION}


@get(
    "/rtc/{name:str}",
    tags=["realtime"],
    summary="The pre-call check's script and style (shared by the guest's and the consultation page)",
    include_in_schema=False,
    opt=_PUBLIC,
)
async def precall_file(name: FromPath[str]) -> Response[bytes]:
    if name not in _PRECALL:
        raise NotFound("not_found", "no such file")
    return Response(
        (_STATIC / name).read_bytes(),
        media_type=_PRECALL[name],
        headers={"Cache-Control": "public, max-age=600", "X-Content-Type-Options": "nosniff"},
    )


@get(
    "/rtc/precall-texts/{language:str}",
    tags=["realtime"],
    summary="The pre-call check's texts in a language (km, vi, fr, en; anything else: English)",
    include_in_schema=False,
    opt=_PUBLIC,
)
async def precall_texts(language: FromPath[str]) -> dict[str, str]:
    strings = texts(language if language in LANGUAGES else FALLBACK)
    return {key: text for key, text in strings.items() if key.startswith("precall_")}
