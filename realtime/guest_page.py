"""The page a guest opens from an invitation SMS: /join/<language>#<token>.

One small HTML document per language (km, vi, fr, en; anything else gets English), its texts
from the catalogues in realtime/locales, its script inline so that a phone on 2G fetches one
file. It carries no data: the token stays in the URL fragment, which is never sent here, and the
page does the rest through POST /v1/invitations/open and /v1/rtc. The Content-Security-Policy
allows exactly the page's own script and style (by hash), connections to this server, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from functools import cache
from importlib import resources

from babel.messages.pofile import read_po
from litestar import Response, get
from litestar.params import FromPath

from api.transaction import NO_TRANSACTION

LANGUAGES = ("km", "vi", "fr", "en")
FALLBACK = "en"
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)


@cache
def texts(language: str) -> dict[str, str]:
    """The page's texts in `language`, English where a text is missing."""

    def read(lang: str) -> dict[str, str]:
        with (resources.files("realtime") / "locales" / f"{lang}.po").open("rb") as fh:
            return {str(m.id): str(m.string) for m in read_po(fh, locale=lang) if m.id and m.string}

    return {**read(FALLBACK), **read(language)} if language != FALLBACK else read(FALLBACK)


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


@cache
def page(language: str) -> tuple[bytes, str]:
    """(the document, its Content-Security-Policy)."""
    strings = texts(language)
    data = json.dumps(strings, ensure_ascii=False).replace("</", "<\\/")  # never ends its <script>
    html = (resources.files("realtime") / "static" / "join.html").read_text(encoding="utf-8")
    html = html.replace("__LANG__", language).replace("__TITLE__", strings["join_title"]).replace("__TEXTS__", data)
    hashes = {kind: [_hash(body) for k, body in _INLINE.findall(html) if k == kind] for kind in ("script", "style")}
    policy = (
        "default-src 'none'; "
        # 'self': the pre-call check's script and style (/rtc/precall.js, .css), shared with /rtc/consult.
        f"script-src {' '.join(hashes['script'])} 'self'; style-src {' '.join(hashes['style'])} 'self'; "
        "connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html.encode(), policy


_OPT = {"exclude_from_auth": True, **NO_TRANSACTION}


def _answer(language: str) -> Response[bytes]:
    document, policy = page(language if language in LANGUAGES else FALLBACK)
    return Response(
        document,
        media_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": policy,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


@get("/join/{language:str}", tags=["realtime"], summary="A guest's page", include_in_schema=False, opt=_OPT)
async def guest_page(language: FromPath[str]) -> Response[bytes]:
    return _answer(language)


@get("/join", tags=["realtime"], summary="A guest's page (English)", include_in_schema=False, opt=_OPT)
async def guest_page_default() -> Response[bytes]:
    return _answer(FALLBACK)
