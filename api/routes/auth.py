"""Sign-in by SMS one-time code, then short-lived access tokens and rotating refresh tokens."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import structlog
from litestar import Controller, Request, Response, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from api.deps import Config, Conn
from api.negotiation import NegotiatedResponse
from api.schemas import OtpRequest, OtpSent, RefreshRequest, TokenPair, TokenRequest
from api.transaction import LATE_KEY, after_rollback, send_after_commit
from domain.errors import InvalidInput, Unauthenticated
from domain.identity import refresh, users
from domain.identity.tokens import issue_access_token
from domain.phone import normalize
from infra.config import Settings
from infra.db import Connection, Pool
from sms import texts
from sms.outbox import SmsOutbox

log = structlog.get_logger(__name__)

_PUBLIC = {"exclude_from_auth": True}


async def _token_pair(conn: Connection, request: Request[Any, Any, Any], user_id: Any, refresh_token: str) -> TokenPair:
    settings: Settings = request.app.state.settings
    principal = await users.load_principal(conn, user_id)
    access = issue_access_token(principal, request.app.state.secret_key, settings.access_token_ttl_s)
    return TokenPair(access_token=access, refresh_token=refresh_token, expires_in=settings.access_token_ttl_s)


async def _revoke_family(pool: Pool, family_id: uuid.UUID) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await refresh.revoke_family(conn, family_id)


class AuthController(Controller):
    path = "/v1/auth"
    tags = ["auth"]

    @post(
        "/otp",
        status_code=HTTP_202_ACCEPTED,
        opt=_PUBLIC,
        summary="Send a one-time sign-in code by SMS (to numbers Spean knows; the same answer for any number)",
    )
    async def request_code(
        self, request: Request[Any, Any, Any], data: JSONBody[OtpRequest], settings: Config, conn: Conn
    ) -> Response[OtpSent]:
        """Only a phone with an account or a registered patient gets a code (no self-sign-up), but
        the answer must not tell which numbers those are: every number counts against the same
        rate limits, gets a code stored the same way (a wrong guess then fails alike), and the
        SMS leaves after the response, so neither body, status nor timing differ.

        The code goes through the SMS ledger like every message (sms.outbox): recorded in this
        transaction, sent right after it commits. Only countries in SPEAN_SMS_COUNTRIES get codes
        (SMS pumping), and that answer names no account."""
        phone = normalize(data.phone, settings.default_region)
        outbox: SmsOutbox = request.app.state.sms_outbox
        if not outbox.allowed_country(phone):
            raise InvalidInput("sms_country_not_allowed", "Spean sends no SMS to this country", field="phone")
        client_ip = request.client.host if request.client else "unknown"
        code = await request.app.state.otp.issue(phone, client_ip)
        known = await users.is_known(conn, phone)
        language = await conn.fetchval(
            "SELECT preferred_language FROM patients WHERE phone = $1 ORDER BY created_at LIMIT 1", phone
        ) or texts.language_for_phone(phone)
        queued = None
        if known:  # essential: a number that sent STOP still gets its codes; secret: wiped once sent
            queued = await outbox.enqueue(
                conn,
                to=phone,
                template="login_code",
                language=language,
                values={"code": code, "minutes": settings.otp_ttl_s // 60},
                key=f"otp:{uuid.uuid4()}",
                essential=True,
                secret=True,
            )
        send_after_commit(request.scope, outbox, queued)
        return NegotiatedResponse(
            OtpSent(phone=phone, expires_in=settings.otp_ttl_s),
            status_code=HTTP_202_ACCEPTED,
        )

    @post("/token", status_code=HTTP_200_OK, opt=_PUBLIC, summary="Exchange a one-time code for tokens")
    async def exchange_code(
        self, request: Request[Any, Any, Any], data: JSONBody[TokenRequest], settings: Config, conn: Conn
    ) -> TokenPair:
        phone = normalize(data.phone, settings.default_region)
        code = data.code.strip()
        if not (len(code) == 6 and code.isdigit()):
            raise InvalidInput("invalid_code_format", "the code is 6 digits", field="code")
        await request.app.state.otp.verify(phone, code)
        user_id = await users.login(conn, phone)
        if user_id is None:  # an unknown number was never sent its code: answer as to a wrong guess
            raise Unauthenticated("otp_invalid", "the code is wrong")
        token = await refresh.issue(conn, user_id, settings.refresh_token_ttl_s)
        return await _token_pair(conn, request, user_id, token)

    # Every effect is in the database transaction, so the Idempotency-Key is written with the
    # answer (one round trip less than claiming it first). A reuse is revoked after the request's
    # transaction rolled back (after_rollback): only then is the token's row lock, which a loser of
    # a concurrent rotation holds, released (revoking before, from another connection, waited for
    # it until the command timeout: a 503 and no revocation), and only if no kept answer of the
    # same key explains the reuse (the phone's own resend gets that answer instead).
    @post("/refresh", status_code=HTTP_200_OK, opt={**_PUBLIC, **LATE_KEY}, summary="Rotate a refresh token")
    async def refresh_tokens(
        self, request: Request[Any, Any, Any], data: JSONBody[RefreshRequest], settings: Config, conn: Conn
    ) -> TokenPair:
        try:
            principal, token = await refresh.rotate(conn, data.refresh_token, settings.refresh_token_ttl_s)
        except refresh.RefreshTokenReused as reused:
            # The request's transaction rolls back with the 401; the revocation must survive it.
            after_rollback(request.scope, partial(_revoke_family, request.app.state.pool, reused.family_id))
            raise
        access = issue_access_token(principal, request.app.state.secret_key, settings.access_token_ttl_s)
        return TokenPair(access_token=access, refresh_token=token, expires_in=settings.access_token_ttl_s)

    @post("/logout", status_code=HTTP_204_NO_CONTENT, opt=_PUBLIC, summary="Revoke a session")
    async def logout(self, data: JSONBody[RefreshRequest], conn: Conn) -> None:
        await refresh.revoke(conn, data.refresh_token)
