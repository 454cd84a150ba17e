"""Fraud and cost: the global hourly budget, beside the per-phone and per-IP limits, refuses
messages once spent, with a metric and a log line; other countries are refused before Twilio."""

from __future__ import annotations

import uuid

import asyncpg
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from infra import redis_client
from infra.config import Settings
from sms.outbox import SmsOutbox, budget_key, policy_from
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
