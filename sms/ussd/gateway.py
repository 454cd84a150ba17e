"""POST /v1/ussd: the USSD gateway's callback (Africa's Talking's shape, which most aggregators
share): form fields sessionId, serviceCode, phoneNumber, networkCode and text (the session's
answers so far, `*`-joined); the answer is text/plain `CON <screen>` to continue or `END <text>`.

No bearer token: the gateway proves itself with the shared secret SPEAN_USSD_SECRET, in the
X-USSD-Secret header or, for gateways that can only be given a URL, the `secret` query parameter.
Without a configured secret every call is refused. A refused gateway gets 403 problem+json; a
gateway that authenticated always gets a valid USSD reply with 200 (a 4xx would end the session
on the phone with a gateway error): bad input, an outage of Redis or a refusal is an END text.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import msgspec
import structlog
from litestar import MediaType, Request, Response, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, HeaderParameter, QueryParameter
from redis.exceptions import RedisError

from api.deps import Config, Conn
from api.request_id import request_id_of
from domain.errors import Forbidden
from infra import outage
from sms import texts
from sms.ussd.engine import Reply, turn
from sms.ussd.render import end_text
from sms.ussd.session import SessionStore

log = structlog.get_logger(__name__)

MAX_FIELD = 200  # session ids and phone numbers are short; the gateway never sends more
MAX_TEXT = 1000  # a whole session's answers, `*`-joined


class UssdCallback(msgspec.Struct, kw_only=True, rename="camel"):
    session_id: Annotated[str, msgspec.Meta(description="The gateway's id of this USSD session")]
    service_code: Annotated[str, msgspec.Meta(description="The code the patient dialled, e.g. *384*123#")]
    phone_number: Annotated[str, msgspec.Meta(description="The caller, E.164 (+855...)")]
    text: Annotated[str, msgspec.Meta(description="Every answer of the session so far, `*`-joined; empty at first")] = (
        ""
    )
    network_code: Annotated[str, msgspec.Meta(description="The mobile network (MCC+MNC)")] = ""


_SECRET_HEADER = HeaderParameter(name="X-USSD-Secret", required=False, description="SPEAN_USSD_SECRET")
_SECRET_QUERY = QueryParameter(
    name="secret", required=False, description="SPEAN_USSD_SECRET, for gateways that can be given only a URL"
)


def _authenticated(configured: str, given: str | None) -> bool:
    return bool(configured) and given is not None and hmac.compare_digest(configured.encode(), given.encode())


@post(
    "/v1/ussd",
    opt={"exclude_from_auth": True},
    media_type=MediaType.TEXT,
    status_code=200,
    tags=["channels"],
    summary="USSD gateway callback: the next screen (CON ...) or the last word (END ...)",
    description=(
        "Authenticated by the shared secret SPEAN_USSD_SECRET in the X-USSD-Secret header or the `secret` "
        "query parameter (403 otherwise, and always when no secret is configured). The reply is text/plain: "
        "`CON <screen>` continues the session, `END <text>` ends it; each screen fits one USSD page "
        "(182 GSM-7 or 80 UCS-2 characters)."
    ),
)
async def ussd_callback(
    request: Request[Any, Any, Any],
    data: Annotated[UssdCallback, Body(media_type=RequestEncodingType.URL_ENCODED)],
    conn: Conn,
    settings: Config,
    header_secret: Annotated[str | None, _SECRET_HEADER] = None,
    secret: Annotated[str | None, _SECRET_QUERY] = None,
) -> Response[str]:
    if not _authenticated(settings.ussd_secret, header_secret if header_secret is not None else secret):
        raise Forbidden("gateway_not_authenticated", "this callback needs the USSD gateway's shared secret")
    language = texts.language_for_phone(data.phone_number)
    if (
        not data.session_id
        or any(len(v) > MAX_FIELD for v in (data.session_id, data.phone_number))
        or (len(data.text) > MAX_TEXT)
    ):
        return _reply(Reply(end_text(language, "ussd_err_invalid"), ends=True))
    store = SessionStore(request.app.state.redis, settings.ussd_session_ttl_s)
    try:
        reply = await turn(
            conn,
            store,
            session_id=data.session_id,
            phone=data.phone_number,
            text=data.text,
            default_region=settings.default_region,
            request_id=request_id_of(request.scope),
        )
    except RedisError as exc:
        dependency = outage.unavailable(exc)
        if dependency is None:
            raise
        dependency.down(exc)
        reply = Reply(end_text(language, "ussd_err_unavailable"), ends=True)
    return _reply(reply)


def _reply(reply: Reply) -> Response[str]:
    return Response(reply.wire, media_type=MediaType.TEXT, status_code=200)
