"""The specialist's workspace: /rtc/workspace/<language>#token=…&appointment=…

The day's queue, the call (the consultation page, /rtc/consult, in a frame: one implementation of
the call, its chat and its guests), the patient's summary from the shared record and the form that
writes the results and completes the consultation. The document carries its texts (from
realtime/locales/workspace, in an attribute: data, not script) and no data; the script and style are files
of their own (/rtc/static/workspace.js, .css), so the Content-Security-Policy allows 'self' only.
"""

from __future__ import annotations

import html
import json
from functools import cache
from importlib import resources

from babel.messages.pofile import read_po
from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from api.transaction import NO_TRANSACTION
from realtime.guest_page import FALLBACK, LANGUAGES

_OPT = {"exclude_from_auth": True, **NO_TRANSACTION}
_STATIC = resources.files("realtime") / "static"
_ASSETS = {"workspace.js": "text/javascript", "workspace.css": "text/css"}
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def texts(language: str) -> dict[str, str]:
    """The workspace's texts in `language`, English where a text is missing."""

    def read(lang: str) -> dict[str, str]:
        with (resources.files("realtime") / "locales" / "workspace" / f"{lang}.po").open("rb") as fh:
            return {str(m.id): str(m.string) for m in read_po(fh, locale=lang) if m.id and m.string}

    return {**read(FALLBACK), **read(language)}


@cache
def document(language: str) -> bytes:
    strings = texts(language)
    page = (_STATIC / "workspace.html").read_text(encoding="utf-8")
    page = page.replace("__LANG__", language).replace("__TITLE__", html.escape(strings["ws_title"]))
    return page.replace("__TEXTS__", html.escape(json.dumps(strings, ensure_ascii=False), quote=True)).encode()


def _answer(language: str) -> Response[bytes]:
    return Response(
        document(language if language in LANGUAGES else FALLBACK),
        media_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": _POLICY,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


@get(
    "/rtc/workspace/{language:str}",
    tags=["realtime"],
    summary="The specialist's workspace",
    include_in_schema=False,
    opt=_OPT,
)
async def workspace_page(language: FromPath[str]) -> Response[bytes]:
    return _answer(language)


@get(
    "/rtc/workspace",
    tags=["realtime"],
    summary="The specialist's workspace (English)",
    include_in_schema=False,
    opt=_OPT,
)
async def workspace_page_default() -> Response[bytes]:
    return _answer(FALLBACK)


@get(
    "/rtc/static/{name:str}",
    tags=["realtime"],
    summary="The workspace's script and style",
    include_in_schema=False,
    opt=_OPT,
)
async def workspace_asset(name: FromPath[str]) -> Response[bytes]:
    kind = _ASSETS.get(name)
    if kind is None:  # only the listed files: never a path into the package
        raise NotFoundException("no such file")
    return Response(
        (_STATIC / name).read_bytes(),
        media_type=kind,
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
