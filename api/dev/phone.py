"""/dev/phone: act as a patient's or a CHW's phone from a browser, without Twilio or a USSD
gateway. Registered only outside production (spean.app), which is the whole of its
authentication: the transport is trusted because the route exists only in development.

No second implementation: a text goes through `api.routes.sms.receive`, the very function the
signed Twilio webhook calls after checking its signature (same MessageSid-once rule, keywords,
domain calls, audit channel `sms`, reply queued in the SMS ledger and sent after commit); a USSD
turn goes through `sms.ussd.gateway.answer`, the gateway's own turn (its transaction, the session
stored after the commit, a polite END while PostgreSQL or Redis is away).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from importlib import resources
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromQuery, JSONBody

from api.deps import Config, Conn
from api.dev import thread
from api.request_id import request_id_of
from api.routes.sms import receive
from api.transaction import NO_TRANSACTION, after_commit
from domain.phone import normalize
from infra.config import Settings
from sms.ussd.gateway import MAX_FIELD, MAX_TEXT, UssdCallback, answer

_PAGE = resources.files("api.dev") / "phone.html"
_SMS_MAX = 1600  # what the webhook keeps of a text: Twilio's own limit for one message
_PHONE = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FIELD)]


class SmsIn(msgspec.Struct, kw_only=True):
    phone: _PHONE
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=_SMS_MAX)]


class SmsSent(msgspec.Struct, kw_only=True):
    message_sid: str
    phone: str


# What the page dials; the menus do not depend on the code (a gateway routes one code to Spean).
DIALLED = "*384*7#"


class UssdIn(msgspec.Struct, kw_only=True):
    phone: _PHONE
    session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    text: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] = ""  # every answer so far, `*`-joined


class UssdOut(msgspec.Struct, kw_only=True):
    wire: str  # exactly what the gateway would get: "CON ..." or "END ..."
    text: str
    ends: bool


class DevPhoneController(Controller):
    path = "/dev/phone"
    tags = ["development"]
    include_in_schema = False  # not part of the API: absent from production altogether
    opt = {"exclude_from_auth": True}

    @get("/", opt=NO_TRANSACTION, summary="The development phone page")
    async def page(self) -> Response[bytes]:
        return Response(
            _PAGE.read_bytes(),
            media_type="text/html",
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
            },
        )

    @get("/numbers", summary="Demo patients' and CHWs' numbers, with names")
    async def get_numbers(self, conn: Conn) -> thread.Numbers:
        return await thread.numbers(conn)

    @get("/thread", summary="One number's SMS thread: its texts and Spean's messages with their state")
    async def get_thread(
        self, request: Request[Any, Any, Any], conn: Conn, settings: Config, phone: FromQuery[str]
    ) -> thread.Thread:
        e164 = normalize(phone, settings.default_region)
        return await thread.thread(conn, request.app.state.redis, e164)

    @post("/sms", status_code=200, summary="Send a text as this number, through the inbound SMS handler")
    async def send_sms(
        self, request: Request[Any, Any, Any], conn: Conn, settings: Config, data: JSONBody[SmsIn]
    ) -> SmsSent:
        phone = normalize(data.phone, settings.default_region)
        sid = "DV" + uuid.uuid4().hex  # Twilio's shape (two letters + 32 hex), never one of Twilio's
        at: datetime = await conn.fetchval("SELECT now()")  # the reply's ledger row has the same instant
        redis = request.app.state.redis
        # Registered before the reply's delivery, and only if the text's handling commits (a
        # request retried after a lost race would otherwise show the text twice).
        after_commit(request.scope, lambda: thread.remember_sent(redis, phone, data.text, at))
        await receive(request, settings, conn, {"MessageSid": sid, "From": phone, "To": "", "Body": data.text})
        return SmsSent(message_sid=sid, phone=phone)

    @post(
        "/ussd",
        status_code=200,
        opt=NO_TRANSACTION,  # the gateway's own turn runs its transaction, as for the real callback
        summary="One USSD turn as this number, through the USSD gateway's turn",
    )
    async def ussd(self, request: Request[Any, Any, Any], data: JSONBody[UssdIn]) -> UssdOut:
        settings: Settings = request.app.state.settings  # the `settings` dependency needs the request's connection
        callback = UssdCallback(
            session_id=data.session_id,
            service_code=DIALLED,
            phone_number=normalize(data.phone, settings.default_region),
            text=data.text,
        )
        reply = await answer(request.app.state, callback, request_id_of(request.scope))
        return UssdOut(wire=reply.wire, text=reply.text, ends=reply.ends)
