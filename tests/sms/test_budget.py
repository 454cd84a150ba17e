"""Fraud and cost: the global hourly budget, beside the per-phone and per-IP limits, refuses
messages once spent, with a metric and a log line; other countries are refused before Twilio."""

from __future__ import annotations

import uuid

import asyncpg
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from infra import redis_client
from infra.config import Settings
from sms.outbox import Rendered, SmsOutbox, budget_key, policy_from
from sms.sender import LogSmsSender
from tests.factory import new_phone


def _trips() -> float:
    return REGISTRY.get_sample_value("spean_sms_budget_trips_total", {"budget": "hourly"}) or 0.0


async def test_the_hourly_budget_trips_with_a_metric_and_a_log_line(
    sms_db: asyncpg.Pool, sms_settings: Settings
) -> None:
    redis = redis_client.connect(sms_settings.redis_url)
    try:
        probe = SmsOutbox(sms_db, redis, LogSmsSender(), policy_from("KH", 10**9, 8, "http://x"))
        await probe.spend_budget()
        used = int(await redis.get(budget_key()) or 0)
        outbox = SmsOutbox(sms_db, redis, LogSmsSender(), policy_from("KH", used + 2, 8, "http://x"))
        phone, before = new_phone(), _trips()
        with capture_logs() as logs:
            async with sms_db.acquire() as conn:
                queued = [
                    await outbox.enqueue(conn, to=phone, template="sms_help", language="en", key=str(uuid.uuid4()))
                    for _ in range(3)
                ]
        assert [q is not None for q in queued] == [True, True, False]
        assert _trips() == before + 1
        assert any(e["event"] == "sms_budget_tripped" and e["log_level"] == "warning" for e in logs)
        rows = await sms_db.fetch("SELECT status, last_error FROM sms_messages WHERE to_phone = $1", phone)
        assert sorted((r["status"], r["last_error"]) for r in rows) == [
            ("queued", None),
            ("queued", None),
            ("refused", "hourly_budget"),
        ]
        await sms_db.execute("DELETE FROM sms_messages WHERE to_phone = $1", phone)  # not for the app's loop
    finally:
        await redis.aclose()


async def test_other_countries_are_refused_before_anything_is_sent(
    sms_db: asyncpg.Pool, sms_settings: Settings
) -> None:
    redis = redis_client.connect(sms_settings.redis_url)
    try:
        outbox = SmsOutbox(sms_db, redis, LogSmsSender(), policy_from("KH,VN", 10**9, 8, "http://x"))
        async with sms_db.acquire() as conn:
            for phone in ("+33612345678", "+12025550143", "+2348031234567"):
                key = str(uuid.uuid4())
                assert await outbox.enqueue(conn, to=phone, template="sms_help", language="en", key=key) is None
                status = await conn.fetchval("SELECT status FROM sms_messages WHERE idempotency_key = $1", key)
                assert status == "refused"
            assert (
                await outbox.enqueue(conn, to="+84912345678", template="sms_help", language="vi", key="vn") is not None
            )
            await conn.execute("DELETE FROM sms_messages WHERE idempotency_key = 'vn'")
    finally:
        await redis.aclose()


async def test_many_recorded_at_once_are_answered_as_one_by_one(sms_db: asyncpg.Pool, sms_settings: Settings) -> None:
    """The notification worker hands a batch over at once (record_many): the same rules in the
    same order (country, STOP, the budget spent in the messages' order), the same rows."""
    redis = redis_client.connect(sms_settings.redis_url)
    stopped, other = new_phone(), "+33612345678"
    try:
        await sms_db.execute("INSERT INTO sms_opt_outs (phone) VALUES ($1)", stopped)
        probe = SmsOutbox(sms_db, redis, LogSmsSender(), policy_from("KH", 10**9, 8, "http://x"))
        results = []
        for many in (False, True):
            await probe.spend_budget()
            used = int(await redis.get(budget_key()) or 0)
            outbox = SmsOutbox(sms_db, redis, LogSmsSender(), policy_from("KH", used + 2, 8, "http://x"))
            phones = [new_phone(), other, stopped, new_phone(), new_phone()]  # the last: over the budget
            messages = [Rendered(to, "Hello", "sms_help", "en", str(uuid.uuid4())) for to in phones]
            async with sms_db.acquire() as conn:
                if many:
                    answers = await outbox.record_many(conn, messages)
                    assert await probe.record_many(conn, messages[:1]) == [(None, None)]  # recorded already
                else:
                    answers = [
                        await outbox.record(
                            conn, to=m.to, body=m.body, template=m.template, language=m.language, key=m.key
                        )
                        for m in messages
                    ]
            rows = await sms_db.fetch(
                "SELECT idempotency_key, status, last_error, body, segments FROM sms_messages "
                "WHERE idempotency_key = ANY($1::text[])",
                [m.key for m in messages],
            )
            kept = {r["idempotency_key"]: (r["status"], r["last_error"], r["body"], r["segments"]) for r in rows}
            results.append(([(i is not None, why) for i, why in answers], [kept[m.key] for m in messages]))
            await sms_db.execute(
                "DELETE FROM sms_messages WHERE idempotency_key = ANY($1::text[])", [m.key for m in messages]
            )
        assert results[0] == results[1]
        assert results[1][0] == [
            (True, None),
            (False, "country_not_allowed"),
            (False, "opted_out"),
            (True, None),
            (False, "hourly_budget"),
        ]
    finally:
        await sms_db.execute("DELETE FROM sms_opt_outs WHERE phone = $1", stopped)
        await redis.aclose()
