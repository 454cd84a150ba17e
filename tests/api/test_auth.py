"""Sign-in by SMS code, tokens, refresh rotation and revocation, through HTTP."""

from __future__ import annotations

import asyncio
import re
import time

import asyncpg
import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from domain.identity import refresh, users
from domain.identity.otp import OtpPolicy, OtpService
from domain.identity.tokens import VerifiedTokens, issue_access_token
from domain.principal import Principal
from infra import redis_client, redis_keys
from infra.config import Settings
from sms.sender import LogSmsSender
from spean.app import create_app
from tests.factory import Factory, auth, new_phone

Client = AsyncTestClient[Litestar]


async def _last_sms(outbox: LogSmsSender, phone: str) -> str:
    """The newest SMS to this phone. It leaves after the commit, from the request or from the
    app's ledger loop when that claims it first, so it may land a moment after the answer."""
    for _ in range(200):
        found = [b for to, b in outbox.sent if to == phone]
        if found:
            return found[-1]
        await asyncio.sleep(0.025)
    raise AssertionError(f"no SMS to {phone} within 5 s")


async def _last_code(outbox: LogSmsSender, phone: str) -> str:
    body = await _last_sms(outbox, phone)
    match = re.search(r"\b(\d{6})\b", body)
    assert match, body
    return match[1]


async def _sign_in(client: Client, outbox: LogSmsSender, phone: str) -> dict[str, str]:
    sent = await client.post("/v1/auth/otp", json={"phone": phone})
    assert sent.status_code == 202, sent.text
    token = await client.post("/v1/auth/token", json={"phone": phone, "code": await _last_code(outbox, phone)})
    assert token.status_code == 200, token.text
    pair: dict[str, str] = token.json()
    return pair


async def known_phone(factory: Factory) -> str:
    """A registered patient's phone: sign-in is for numbers Spean knows."""
    phone = new_phone()
    await factory.patient(await factory.facility(kind="health_post"), phone=phone)
    return phone


class TestOneTimeCode:
    async def test_code_by_sms_then_tokens_then_me(
        self, client: Client, factory: Factory, sms_outbox: LogSmsSender
    ) -> None:
        phone = await known_phone(factory)
        national = "0" + phone.removeprefix("+855")  # people type their number the local way
        sent = await client.post("/v1/auth/otp", json={"phone": national})
        assert sent.json() == {"phone": phone, "expires_in": 300}
        body = await _last_sms(sms_outbox, phone)
        assert "Spean" in body
        assert "5" in body
        assert "លេខកូដ" in body
        pair = (
            await client.post("/v1/auth/token", json={"phone": phone, "code": await _last_code(sms_outbox, phone)})
        ).json()
        assert pair["token_type"] == "Bearer"
        assert pair["expires_in"] == 900
        me = await client.get("/v1/me", headers=auth(pair["access_token"]))
        assert me.status_code == 200
        assert me.json()["phone"] == phone
        assert me.json()["roles"] == []
        assert len(me.json()["patient_ids"]) == 1

    async def test_patient_registered_by_chw_is_reachable_after_sign_in(
        self, client: Client, factory: Factory, sms_outbox: LogSmsSender
    ) -> None:
        post = await factory.facility(kind="health_post")
        phone = new_phone()
        patient_id = await factory.patient(post, phone=phone)
        pair = await _sign_in(client, sms_outbox, phone)
        me = (await client.get("/v1/me", headers=auth(pair["access_token"]))).json()
        assert me["patient_ids"] == [str(patient_id)]
        read = await client.get(f"/v1/patients/{patient_id}", headers=auth(pair["access_token"]))
        assert read.status_code == 200

    async def test_code_is_single_use(self, client: Client, factory: Factory, sms_outbox: LogSmsSender) -> None:
        phone = await known_phone(factory)
        await client.post("/v1/auth/otp", json={"phone": phone})
        code = await _last_code(sms_outbox, phone)
        assert (await client.post("/v1/auth/token", json={"phone": phone, "code": code})).status_code == 200
        again = await client.post("/v1/auth/token", json={"phone": phone, "code": code})
        assert again.status_code == 401
        assert again.json()["code"] == "otp_expired"

    async def test_wrong_codes_are_capped(self, client: Client, factory: Factory, sms_outbox: LogSmsSender) -> None:
        phone = await known_phone(factory)
        await client.post("/v1/auth/otp", json={"phone": phone})
        code = await _last_code(sms_outbox, phone)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        codes = []
        for _ in range(5):
            response = await client.post("/v1/auth/token", json={"phone": phone, "code": wrong})
            codes.append(response.json()["code"])
        assert codes == ["otp_invalid"] * 4 + ["otp_attempts_exceeded"]
        # The right code no longer works either: the attacker burned it.
        late = await client.post("/v1/auth/token", json={"phone": phone, "code": code})
        assert late.json()["code"] == "otp_expired"

    async def test_codes_rate_limited_per_phone(self, client: Client) -> None:
        phone = new_phone()
        statuses = [(await client.post("/v1/auth/otp", json={"phone": phone})).status_code for _ in range(6)]
        assert statuses == [202] * 5 + [429]
        limited = await client.post("/v1/auth/otp", json={"phone": phone})
        assert limited.json()["code"] == "otp_rate_limited_phone"
        assert 0 < int(limited.headers["retry-after"]) <= 3600

    async def test_bad_phone_and_bad_code_format(self, client: Client) -> None:
        bad = await client.post("/v1/auth/otp", json={"phone": "12"})
        assert bad.status_code == 422
        assert bad.json()["code"] == "invalid_phone"
        assert bad.json()["errors"][0]["field"] == "phone"
        fmt = await client.post("/v1/auth/token", json={"phone": new_phone(), "code": "12ab"})
        assert fmt.status_code == 422
        assert fmt.json()["code"] == "invalid_code_format"


class TestUnknownNumbers:
    """No self-sign-up: a number with no account and no registered patient never gets a code or
    a token, and nothing in the answers tells it apart from a known number."""

    async def test_an_unknown_number_gets_the_same_answer_but_no_code_and_no_token(
        self, client: Client, factory: Factory, sms_outbox: LogSmsSender, db: asyncpg.Pool
    ) -> None:
        known, unknown = await known_phone(factory), new_phone()
        answers = [await client.post("/v1/auth/otp", json={"phone": phone}) for phone in (known, unknown)]
        assert [a.status_code for a in answers] == [202, 202]
        assert [set(a.json()) for a in answers] == [{"phone", "expires_in"}] * 2
        assert [a.json()["phone"] for a in answers] == [known, unknown]
        known_headers, unknown_headers = ({k for k in a.headers if k not in ("x-request-id", "date")} for a in answers)
        assert known_headers == unknown_headers
        await _last_sms(sms_outbox, known)
        assert not any(to == unknown for to, _ in sms_outbox.sent)
        # A guess fails alike for both, attempt for attempt, and no account is ever created.
        real = await _last_code(sms_outbox, known)
        guesses = [g for g in (f"{n:06d}" for n in range(6)) if g != real][:5]
        for phone in (known, unknown):
            codes = []
            for guess in guesses:
                response = await client.post("/v1/auth/token", json={"phone": phone, "code": guess})
                codes.append((response.status_code, response.json()["code"]))
            assert codes == [(401, "otp_invalid")] * 4 + [(401, "otp_attempts_exceeded")]
            never = await client.post("/v1/auth/token", json={"phone": phone, "code": "123456"})
            assert (never.status_code, never.json()["code"]) == (401, "otp_expired")
        assert await db.fetchval("SELECT count(*) FROM users WHERE phone = $1", unknown) == 0

    async def test_even_the_right_code_gives_an_unknown_number_no_token(
        self, client: Client, settings: Settings, db: asyncpg.Pool
    ) -> None:
        """Were the code ever leaked or guessed, the unknown number still gets no account."""
        unknown = new_phone()
        redis = redis_client.connect(settings.redis_url)  # the service the app uses, on this test's loop
        otp = OtpService(redis, client.app.state.secret_key, OtpPolicy(300, 5, 5, 100))
        code = await otp.issue(unknown, "198.51.100.7")
        await redis.aclose()
        response = await client.post("/v1/auth/token", json={"phone": unknown, "code": code})
        assert (response.status_code, response.json()["code"]) == (401, "otp_invalid")
        assert await db.fetchval("SELECT count(*) FROM users WHERE phone = $1", unknown) == 0

    async def test_unknown_numbers_count_against_the_same_rate_limit(self, client: Client, factory: Factory) -> None:
        for phone in (await known_phone(factory), new_phone()):
            statuses = [(await client.post("/v1/auth/otp", json={"phone": phone})).status_code for _ in range(6)]
            assert statuses == [202] * 5 + [429]


class TestTokens:
    async def test_refresh_rotates_and_reuse_revokes_the_session(
        self, client: Client, factory: Factory, sms_outbox: LogSmsSender
    ) -> None:
        pair = await _sign_in(client, sms_outbox, await known_phone(factory))
        rotated = await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert rotated.status_code == 200
        second = rotated.json()
        assert second["refresh_token"] != pair["refresh_token"]
        # The old token comes back (stolen copy): the whole family is revoked, the new one too.
        reused = await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert reused.status_code == 401
        assert reused.json()["code"] == "refresh_token_reused"
        after = await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert after.json()["code"] == "refresh_token_revoked"

    async def test_a_retry_with_the_same_key_replays_and_keeps_the_session(
        self, client: Client, factory: Factory, sms_outbox: LogSmsSender
    ) -> None:
        """The phone lost the answer and sends the same request again: the kept answer, not a
        reuse (the key is written with the answer, so the rotation finds the token used first)."""
        pair = await _sign_in(client, sms_outbox, await known_phone(factory))
        body, headers = {"refresh_token": pair["refresh_token"]}, {"Idempotency-Key": f"refresh-{new_phone()}"}
        first = await client.post("/v1/auth/refresh", json=body, headers=headers)
        again = await client.post("/v1/auth/refresh", json=body, headers=headers)
        assert first.status_code == again.status_code == 200, again.text
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        # The session lives on; the same token under another key is a copy, and ends it.
        later = await client.post("/v1/auth/refresh", json={"refresh_token": first.json()["refresh_token"]})
        assert later.status_code == 200, later.text
        copied = await client.post("/v1/auth/refresh", json=body, headers={"Idempotency-Key": f"copy-{new_phone()}"})
        assert copied.json()["code"] == "refresh_token_reused"
        after = await client.post("/v1/auth/refresh", json={"refresh_token": later.json()["refresh_token"]})
        assert after.json()["code"] == "refresh_token_revoked"

    async def test_an_expired_token_is_refused_and_not_consumed(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        """The rotation claims the token before the expiry is judged: the refusal rolls it back."""
        async with db.acquire() as conn:
            user_id = await users.ensure_user(conn, new_phone())
            token = await refresh.issue(conn, user_id, -1)
        response = await client.post("/v1/auth/refresh", json={"refresh_token": token})
        assert (response.status_code, response.json()["code"]) == (401, "refresh_token_expired")
        rows = await db.fetch("SELECT used_at, revoked_at FROM refresh_tokens WHERE user_id = $1", user_id)
        assert [(r["used_at"], r["revoked_at"]) for r in rows] == [(None, None)]

    async def test_the_rotated_access_token_carries_the_current_roles(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        """Roles, practitioner and administrator flag are read in the rotation's statement."""
        centre = await factory.facility()
        specialist = await factory.staff(centre)
        post = await factory.facility(kind="health_post")
        async with db.acquire() as conn:
            await users.grant_role(conn, specialist.user_id, post, "facility_admin")
            token = await refresh.issue(conn, specialist.user_id, 600)
            expected = await users.load_principal(conn, specialist.user_id)
        response = await client.post("/v1/auth/refresh", json={"refresh_token": token})
        assert response.status_code == 200, response.text
        verified = VerifiedTokens(client.app.state.secret_key).principal(response.json()["access_token"])
        assert verified == expected
        assert len(verified.memberships) == 2

    async def test_logout_revokes(self, client: Client, factory: Factory, sms_outbox: LogSmsSender) -> None:
        pair = await _sign_in(client, sms_outbox, await known_phone(factory))
        out = await client.post("/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
        assert out.status_code == 204
        after = await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert after.json()["code"] == "refresh_token_revoked"
        unknown = await client.post("/v1/auth/refresh", json={"refresh_token": "nope"})
        assert unknown.json()["code"] == "invalid_refresh_token"

    async def test_missing_malformed_expired_and_forged_tokens(self, client: Client, factory: Factory) -> None:
        assert (await client.get("/v1/me")).json()["code"] == "missing_token"
        basic = await client.get("/v1/me", headers={"Authorization": "Basic abc"})
        assert basic.json()["code"] == "invalid_token"
        garbage = await client.get("/v1/me", headers=auth("not.a.jwt"))
        assert garbage.status_code == 401
        assert garbage.json()["code"] == "invalid_token"
        admin = await factory.admin_token()
        me = (await client.get("/v1/me", headers=auth(admin))).json()
        import uuid

        principal = Principal(user_id=uuid.UUID(me["user_id"]), is_system_admin=True)
        secret = client.app.state.secret_key
        expired = issue_access_token(principal, secret, 60, now=time.time() - 3600)
        response = await client.get("/v1/me", headers=auth(expired))
        assert response.status_code == 401
        assert response.json()["code"] == "token_expired"
        assert response.headers["www-authenticate"].startswith("Bearer")
        forged = issue_access_token(principal, "another-secret-of-sufficient-length-0123456789", 600)
        assert (await client.get("/v1/me", headers=auth(forged))).json()["code"] == "invalid_token"


async def test_codes_rate_limited_per_client_address(settings: Settings) -> None:
    strict = msgspec.structs.replace(settings, otp_per_ip_per_hour=3)
    app = create_app(strict, sms_sender=LogSmsSender())
    redis = redis_client.connect(settings.redis_url)
    await redis.delete(redis_keys.otp_rate("ip:testclient"))  # other tests share the test client's address
    await redis.aclose()
    async with AsyncTestClient(app) as own:
        # Different phones, one address: the fourth request in the hour is refused.
        statuses = [(await own.post("/v1/auth/otp", json={"phone": new_phone()})).status_code for _ in range(3)]
        refused = await own.post("/v1/auth/otp", json={"phone": new_phone()})
    assert statuses[:3] == [202, 202, 202]
    assert refused.status_code == 429
    assert refused.json()["code"] == "otp_rate_limited_ip"


async def test_the_code_request_answers_in_messagepack_too(client: Client, factory: Factory) -> None:
    response = await client.post(
        "/v1/auth/otp", json={"phone": await known_phone(factory)}, headers={"Accept": "application/msgpack"}
    )
    assert response.status_code == 202
    assert response.headers["content-type"].startswith("application/msgpack")
    assert set(msgspec.msgpack.decode(response.content)) == {"phone", "expires_in"}
