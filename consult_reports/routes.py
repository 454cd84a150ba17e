"""HTTP side of consultation reports: the specialist makes one; the patient opens it from the SMS.

`POST /v1/consultations/{appointment_id}/report` (the consultation's specialist, once it is
completed): the record is read, the PDF rendered in the patient's language, kept as a record
attachment, the health post told in the app (outbox `record.report_ready`), and the patient sent
an SMS with a link, all in the request's one transaction (the SMS leaves after it commits). Asking
again answers the first report.

`/r/{token}`: the link's page. It asks for the patient's results PIN (set on USSD); the right PIN
serves the PDF, a wrong one is counted in the PIN's own row (locked after three), on a transaction
of its own, so a refusal's count is never rolled back with the refusal. A browser gets pages in the
report's language; any other client gets the error contract's problem+json.
"""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from api.deps import Caller, Config, Conn, DbPool
from api.request_id import request_id_of
from api.transaction import NO_TRANSACTION, send_after_commit
from consult_reports import fonts, pdf
from consult_reports.texts import FALLBACK, text
from domain.audit import trail
from domain.errors import Conflict, DomainError, Forbidden, NotFound, RateLimited, Unavailable
from domain.record import report, store
from infra.db import Connection, in_transaction
from infra.storage import BlobStore
from sms import texts as sms_texts
from sms.outbox import SmsOutbox
from sms.ussd import pin

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_PAGE_OPT = {"exclude_from_auth": True, **NO_TRANSACTION}


def link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/r/{token}"


class ReportController(Controller):
    path = "/v1/consultations/{appointment_id:uuid}/report"
    tags = ["record"]

    @post("/", summary="Make the completed consultation's PDF report, file it in the record, send the patient a link")
    async def make(
        self,
        request: Request[Any, Any, Any],
        appointment_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
        pool: DbPool,
        settings: Config,
    ) -> report.Report:
        content = await report.gather(conn, pool, principal, appointment_id)
        found = await report.existing(conn, appointment_id)
        if found is not None:
            return found
        try:
            document = await asyncio.to_thread(pdf.render, content, datetime.now(UTC))
        except fonts.FontMissing as exc:
            raise Unavailable("report_font_missing", str(exc), retry_after_s=3600) from None
        blobs: BlobStore = request.app.state.blobs
        made, token = await report.store(conn, principal, blobs, content, document)
        if token is not None and content.patient_phone:
            outbox: SmsOutbox = request.app.state.sms_outbox
            body = sms_texts.text(content.language, "report_link", link=link(settings.public_base_url, token))
            sms_id, _refused = await outbox.record(
                conn, to=content.patient_phone, body=body, template="report_link", language=content.language,
                key=f"report:{appointment_id}", secret=True,
            )  # fmt: skip
            if sms_id is not None:  # a refused SMS (STOP, budget) leaves the report in the app only
                await report.attach_sms(conn, appointment_id, sms_id)
                send_after_commit(request.scope, outbox, sms_id)
            made.sent_to_patient = sms_id is not None
        return made


# -- the patient's page ------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:sans-serif;max-width:30em;margin:1em auto;padding:0 1em;line-height:1.5}}
input,button{{font-size:1.2em;padding:.4em;margin:.3em 0}}.problem{{color:#a00}}</style></head>
<body><h1>{title}</h1>{problem}<p>{intro}</p>
<form method="post"><label>{label}<br><input name="pin" inputmode="numeric" pattern="[0-9]{{4}}" maxlength="4"
 autocomplete="off" required></label><br><button>{open}</button></form></body></html>"""

_GONE = ("report_link_not_found", "report_link_expired")
_GONE_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head><body><h1>{title}</h1>{problem}</body></html>"""

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
}
_PROBLEM_TEXT = {
    "wrong_pin": "report_page_wrong",
    "pin_locked": "report_page_locked",
    "pin_not_set": "report_page_not_set",
    "report_link_not_found": "report_page_gone",
    "report_link_expired": "report_page_gone",
}


def _page(language: str, status: int = 200, problem: str | None = None) -> Response[bytes]:
    def t(message_id: str) -> str:
        return html.escape(text(language, message_id))

    shown = f'<p class="problem" role="alert">{t(_PROBLEM_TEXT[problem])}</p>' if problem else ""
    if problem in _GONE:  # no report behind this link: nothing to ask a PIN for
        return Response(
            _GONE_PAGE.format(lang=language, title=t("report_page_title"), problem=shown).encode(),
            status_code=status, media_type="text/html", headers={**_HEADERS, "X-Error-Code": problem},
        )  # fmt: skip
    document = _PAGE.format(
        lang=language, title=t("report_page_title"), problem=shown, intro=t("report_page_intro"),
        label=t("report_page_pin"), open=t("report_page_open"),
    )  # fmt: skip
    headers = {**_HEADERS, **({"X-Error-Code": problem} if problem else {})}
    return Response(document.encode(), status_code=status, media_type="text/html", headers=headers)


def _wants_page(request: Request[Any, Any, Any]) -> bool:
    return "text/html" in request.headers.get("accept", "")


_PAGE_STATUS: dict[type[DomainError], int] = {NotFound: 404, Conflict: 409, Forbidden: 403, RateLimited: 429}


def _refuse(request: Request[Any, Any, Any], error: DomainError, language: str) -> Response[bytes]:
    """A browser is shown the page again with what went wrong; an API client gets the error."""
    status = _PAGE_STATUS.get(type(error))
    # What the page has no words for (a dependency down: Unavailable) leaves as the error
    # contract's problem, for a browser too, rather than failing here on a missing text.
    if not _wants_page(request) or status is None or error.code not in _PROBLEM_TEXT:
        raise error
    return _page(str(error.extra.get("language") or language), status, error.code)


def _no_such_link(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A token no link can have (the shape of the ones we mint): not looked up."""
    return _refuse(request, NotFound("report_link_not_found", "this link opens no report"), FALLBACK)


@get(
    "/r/{token:str}",
    tags=["record"],
    summary="A consultation report's link: the PIN page",
    include_in_schema=False,
    opt=_PAGE_OPT,
)
async def report_page(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[bytes]:
    if not _TOKEN.match(token):
        return _no_such_link(request)
    async with request.app.state.pool.acquire() as conn:
        try:
            linked = await report.by_link(conn, token)
        except DomainError as exc:
            return _refuse(request, exc, FALLBACK)
    return _page(linked.language)


async def _open(conn: Connection, token: str, given: str, request_id: str | None) -> tuple[str, str | None, Any]:
    """(the report's language, the refusal's code or None, the PDF's blob key); the try is audited."""
    linked = await report.by_link(conn, token)
    checked = await pin.check(conn, linked.patient_id, given) if pin.well_formed(given) else pin.Check.WRONG
    refusal = {pin.Check.WRONG: "wrong_pin", pin.Check.LOCKED: "pin_locked", pin.Check.NOT_SET: "pin_not_set"}.get(
        checked
    )
    await trail.record_patient_by_pin(
        conn, action="read", resource_type="DocumentReference", resource_id=linked.entry_id,
        patient_id=linked.patient_id, outcome="refused" if refusal else "success", request_id=request_id,
    )  # fmt: skip
    entry = None if refusal else await store.head(conn, linked.entry_id)
    return linked.language, refusal, None if entry is None else entry.body["sha256"]


_REFUSALS: dict[str, Callable[[], DomainError]] = {
    "wrong_pin": lambda: Forbidden("wrong_pin", "that is not the patient's results PIN"),
    "pin_locked": lambda: RateLimited("pin_locked", "too many wrong PINs: try again in 30 minutes", retry_after_s=1800),
    "pin_not_set": lambda: Conflict("pin_not_set", "the patient has no results PIN: set one on USSD, or use the app"),
}


@post(
    "/r/{token:str}",
    status_code=HTTP_200_OK,
    tags=["record"],
    summary="A consultation report's link: the PDF, for the PIN",
    include_in_schema=False,
    opt=_PAGE_OPT,
)
async def open_report(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[bytes]:
    if not _TOKEN.match(token):
        return _no_such_link(request)
    form = await request.form()
    given = str(form.get("pin") or "").strip()
    try:
        language, refusal, key = await in_transaction(
            request.app.state.pool, lambda conn: _open(conn, token, given, request_id_of(request.scope))
        )
    except DomainError as exc:
        return _refuse(request, exc, FALLBACK)
    if refusal is not None:
        return _refuse(request, _REFUSALS[refusal](), language)
    blobs: BlobStore = request.app.state.blobs
    data = None if key is None else await blobs.get(key)
    if data is None:
        raise NotFound("attachment_missing", "the report's bytes are not in the store")
    return Response(
        data,
        media_type="application/pdf",
        headers={**_HEADERS, "Content-Disposition": 'inline; filename="report.pdf"'},
    )
