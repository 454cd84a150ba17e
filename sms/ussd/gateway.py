"""POST /v1/ussd: the USSD gateway's callback (Africa's Talking's shape, which most aggregators
share): form fields sessionId, serviceCode, phoneNumber, networkCode and text (the session's
answers so far, `*`-joined); the answer is text/plain `CON <screen>` to continue or `END <text>`.

No bearer token: the gateway proves itself with the shared secret SPEAN_USSD_SECRET, in the
X-USSD-Secret header or, for gateways that can only be given a URL, the `secret` query parameter.
Without a configured secret every call is refused. A refused gateway gets 403 problem+json; a
gateway that authenticated always gets a valid USSD reply with 200, because a 4xx or 5xx ends the
session on the phone with the gateway's raw error: bad input, a refusal, and an outage of
PostgreSQL or Redis are all a polite END text in the caller's language.

The route runs its own transaction instead of the request's (api.transaction), so that an outage
met anywhere, even on taking a connection, is still answered in the USSD form. A turn that loses a
race PostgreSQL cannot queue (deadlock, serialization failure) runs again whole, as api.transaction
does for every other route; the session is stored only once the turn committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import random
from typing import Annotated, Any

import asyncpg
import msgspec
import structlog
from litestar import MediaType, Request, Response, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.params import Body, HeaderParameter, QueryParameter

from api.request_id import request_id_of
from api.transaction import NO_TRANSACTION
from domain import constraints
from domain.errors import Forbidden, Unavailable
from infra import outage
from infra.config import Settings
from infra.db import Pool
from sms import texts
from sms.ussd.engine import Refused, Reply, remember, spoken_language, turn
from sms.ussd.render import end_text
from sms.ussd.session import SessionStore

log = structlog.get_logger(__name__)

MAX_FIELD = 200  # session ids and phone numbers are short; the gateway never sends more
MAX_TEXT = 1000  # a whole session's answers, `*`-joined
MAX_ATTEMPTS = 4  # a turn that lost a race runs at most this often
BACKOFF_S = 0.01
ACQUIRE_S = 3.0  # the gateway waits ~5-10 s for a screen: a polite END beats its timeout
LANGUAGE_LOOKUP_S = 1.0


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
    opt={"exclude_from_auth": True, **NO_TRANSACTION},
    media_type=MediaType.TEXT,
    status_code=200,
    tags=["channels"],
    summary="USSD gateway callback: the next screen (CON ...) or the last word (END ...)",
    description=(
        "Authenticated by the shared secret SPEAN_USSD_SECRET in the X-USSD-Secret header or the `secret` "
        "query parameter (403 otherwise, and always when no secret is configured). The reply is text/plain: "
        "`CON <screen>` continues the session, `END <text>` ends it; each screen fits one USSD page "
        "(182 GSM-7 or 80 UCS-2 characters). An authenticated gateway always gets 200, even while the "
        "database or Redis is away (then a polite END in the caller's language)."
    ),
)
async def ussd_callback(
    request: Request[Any, Any, Any],
    data: Annotated[UssdCallback, Body(media_type=RequestEncodingType.URL_ENCODED)],
    header_secret: Annotated[str | None, _SECRET_HEADER] = None,
    secret: Annotated[str | None, _SECRET_QUERY] = None,
) -> Response[str]:
    state = request.app.state
    settings: Settings = state.settings
    if not _authenticated(settings.ussd_secret, header_secret if header_secret is not None else secret):
        raise Forbidden("gateway_not_authenticated", "this callback needs the USSD gateway's shared secret")
    if (
        not data.session_id
        or any(len(v) > MAX_FIELD for v in (data.session_id, data.phone_number))
        or (len(data.text) > MAX_TEXT)
    ):
        return _reply(Reply(end_text(texts.language_for_phone(data.phone_number), "ussd_err_invalid"), ends=True))
    return _reply(await answer(state, data, request_id_of(request.scope)))


async def answer(state: State, data: UssdCallback, request_id: str | None) -> Reply:
    """One turn from a caller the transport already trusts (the gateway's secret, or /dev/phone,
    which exists only outside production): run in its own transaction, the session stored after
    the commit, and a polite END in the caller's language when PostgreSQL or Redis is away."""
    settings: Settings = state.settings
    store = SessionStore(state.redis, settings.ussd_session_ttl_s)
    try:
        if state.migrations_pending:  # started while PostgreSQL was away: the schema is not there yet
            raise ConnectionRefusedError("migrations pending")
        reply = await _run(state.pool, store, data, settings, request_id)
    except Exception as exc:
        dependency = outage.unavailable(exc)
        if dependency is None:
            # A bug: logged with its traceback, and the caller still gets a last word, not the
            # gateway's raw error.
            log.exception("ussd_turn_failed", session_id=data.session_id)
        else:
            dependency.down(exc)  # logged once per outage
        language = await _language_when_down(state.pool, store, data, settings, dependency)
        reply = Reply(end_text(language, "ussd_err_unavailable"), ends=True)
    return reply


async def _run(
    pool: Pool, store: SessionStore, data: UssdCallback, settings: Settings, request_id: str | None
) -> Reply:
    """One turn in one transaction, run again whole if it lost a race; the session is stored
    after the commit."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with pool.acquire(timeout=ACQUIRE_S) as conn:
                try:
                    async with conn.transaction():
                        reply = await turn(
                            conn,
                            store,
                            session_id=data.session_id,
                            phone=data.phone_number,
                            text=data.text,
                            default_region=settings.default_region,
                            request_id=request_id,
                        )
                except Exception as exc:
                    if outage.unavailable(exc) is outage.POSTGRES:
                        with contextlib.suppress(Exception):
                            conn.terminate()  # half-dead: never hand it to the next turn
                    raise
        except Refused as refused:  # rolled back; the caller is told why
            reply = refused.reply
        except asyncpg.PostgresError as exc:
            if attempt < MAX_ATTEMPTS and isinstance(constraints.domain_error(exc), Unavailable):
                await asyncio.sleep(random.uniform(0, BACKOFF_S * 2**attempt))  # noqa: S311 - jitter
                continue
            raise
        outage.POSTGRES.up()
        await remember(store, data.session_id, reply)
        outage.REDIS.up()  # the session was read and kept
        return reply
    raise AssertionError("unreachable")  # the last attempt returns or raises


async def _language_when_down(
    pool: Pool, store: SessionStore, data: UssdCallback, settings: Settings, away: outage.Dependency | None
) -> str:
    """The caller's language without relying on what is away: the session's (Redis), else the
    patient's preferred one (PostgreSQL), else the one of the number's country calling code.
    What just failed is not asked again; the other is, briefly."""
    if away is not outage.REDIS:
        with contextlib.suppress(Exception):
            session = await asyncio.wait_for(store.load(data.session_id), LANGUAGE_LOOKUP_S)
            if session is not None:
                return session.language
    if away is not outage.POSTGRES:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(LANGUAGE_LOOKUP_S), pool.acquire(timeout=LANGUAGE_LOOKUP_S) as conn:
                language = await spoken_language(conn, data.phone_number, settings.default_region)
            if language is not None:
                return language
    return texts.language_for_phone(data.phone_number)


def _reply(reply: Reply) -> Response[str]:
    return Response(reply.wire, media_type=MediaType.TEXT, status_code=200)
