"""Twilio's webhooks: inbound SMS and delivery status callbacks.

Public (Twilio sends no bearer token) but signed: X-Twilio-Signature is checked with the SDK's
RequestValidator against the URL Twilio called, rebuilt from SPEAN_PUBLIC_BASE_URL + the path (a
proxy in front changes the host and scheme the server sees). Unsigned or badly signed → 403 and
nothing happens; with no TWILIO_AUTH_TOKEN configured every webhook is refused. The signature is
checked before any field is read, so a forged request learns nothing about the form it needs.

The inbound answer is an empty TwiML <Response/>: the reply SMS goes through the ledger
(sms.inbound), so it is recorded, retried and counted like every outbound message.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from api.deps import Config, Conn
from api.transaction import send_after_commit
from domain.errors import Forbidden, InvalidInput
from domain.phone import normalize
from infra.config import Settings
from infra.db import Connection
from sms import inbound
from sms.outbox import SmsOutbox, record_status

_XML = "application/xml"
_MAX_BODY = 1600  # Twilio's own limit for one message's text
_MAX_ID = 64


def _string(description: str, max_length: int = _MAX_ID) -> Schema:
    return Schema(type=OpenAPIType.STRING, description=description, max_length=max_length)


INBOUND_FORM = Schema(
    type=OpenAPIType.OBJECT,
    required=["MessageSid", "From", "Body"],
    properties={
        "MessageSid": _string("Twilio's id of the message (a repeated one is ignored)"),
        "AccountSid": _string("The Twilio account"),
        "From": _string("The sender's number, E.164"),
        "To": _string("Spean's number, E.164"),
        "Body": _string(
            "The text: a keyword in km/vi/fr/en (BOOK, MY, CANCEL n, MOVE n, CONSENT, WITHDRAW, REGISTER, HELP, "
            "STOP, START), or the answer to Spean's last question (YES/NO, a number, a name...)",
            _MAX_BODY,
        ),
        "NumSegments": _string("How many segments it came in"),
    },
    additional_properties=True,  # Twilio adds fields (FromCountry, SmsStatus...): signed, ignored
)
STATUS_FORM = Schema(
    type=OpenAPIType.OBJECT,
    required=["MessageSid", "MessageStatus"],
    properties={
        "MessageSid": _string("Twilio's id of the message Spean sent"),
        "MessageStatus": _string("queued, sending, sent, delivered, undelivered or failed"),
        "ErrorCode": _string("Twilio's error code when undelivered or failed"),
    },
    additional_properties=True,
)
SIGNED = {"exclude_from_auth": True, "twilio_signed": True}


async def _signed_form(request: Request[Any, Any, Any], settings: Settings) -> dict[str, str]:
    """The form Twilio posted, once its signature is proven; else a 403 and nothing read."""
    if not settings.twilio_auth_token:
        raise Forbidden("sms_webhook_disabled", "TWILIO_AUTH_TOKEN is not configured: webhooks are refused")
    signature = request.headers.get("x-twilio-signature", "")
    params: dict[str, str] = {}
    if request.content_type[0] == "application/x-www-form-urlencoded":  # Twilio's only form: no multipart parsing
        params = {key: str(value) for key, value in (await request.form()).items()}
    url = settings.public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    if not signature or not RequestValidator(settings.twilio_auth_token).validate(url, params, signature):
        raise Forbidden("invalid_signature", "X-Twilio-Signature does not match this request")
    return params


def _field(form: dict[str, str], name: str, max_length: int = _MAX_ID) -> str:
    value = form.get(name, "")
    if not value.strip() or len(value) > max_length or "\x00" in value:
        raise InvalidInput("invalid_field", f"{name} is required (at most {max_length} characters)", field=name)
    return value


async def receive(request: Request[Any, Any, Any], settings: Settings, conn: Connection, form: dict[str, str]) -> None:
    """Act on one inbound SMS in Twilio's form whose sender is already trusted (a signed webhook,
    or /dev/phone, which exists only outside production); the reply leaves after commit.

    The one path from a received text to its answer, so what the development page shows is what
    a real phone gets."""
    sid = _field(form, "MessageSid")
    phone = normalize(_field(form, "From"), settings.default_region)
    body = form.get("Body", "")[:_MAX_BODY].replace("\x00", "")
    outbox: SmsOutbox = request.app.state.sms_outbox
    reply = await inbound.handle(
        conn,
        outbox,
        request.app.state.redis,
        message_sid=sid,
        from_phone=phone,
        body=body,
        default_region=settings.default_region,
    )
    send_after_commit(request.scope, outbox, reply)


class SmsWebhookController(Controller):
    path = "/v1/sms"
    tags = ["sms"]

    @post(
        "/inbound",
        status_code=HTTP_200_OK,
        media_type=_XML,
        opt={**SIGNED, "form_body": INBOUND_FORM},
        summary="Twilio inbound SMS webhook (signed): acts on a keyword, the reply leaves as an SMS",
        description="Configure as the number's 'A message comes in' webhook (HTTP POST). Answers an empty "
        "TwiML <Response/>; the reply SMS is sent through Spean's ledger after commit.",
    )
    async def inbound_sms(self, request: Request[Any, Any, Any], settings: Config, conn: Conn) -> Response[str]:
        await receive(request, settings, conn, await _signed_form(request, settings))
        return Response(str(MessagingResponse()), media_type=_XML)

    @post(
        "/status",
        status_code=HTTP_204_NO_CONTENT,
        opt={**SIGNED, "form_body": STATUS_FORM},
        summary="Twilio message status callback (signed): records delivery of an SMS Spean sent",
        description="Spean passes this URL as StatusCallback on every message it sends.",
    )
    async def status_callback(self, request: Request[Any, Any, Any], settings: Config, conn: Conn) -> None:
        form = await _signed_form(request, settings)
        error = form.get("ErrorCode") or None
        await record_status(conn, _field(form, "MessageSid"), _field(form, "MessageStatus"), error and error[:_MAX_ID])
