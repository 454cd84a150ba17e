"""The SMS ledger and its sender loop: no provider call inside a database transaction, nothing
sent before the change that causes a message commits, nothing lost, nothing sent twice.

1. `enqueue` writes the message as a `sms_messages` row in the caller's transaction (rolled back
   with it). The rules applied before anything leaves are here, once: the country allow-list
   (SMS pumping), STOP (non-essential messages only; sign-in codes still go), the global hourly
   budget. A refused message is kept as a row with status `refused` and the reason.
2. After commit, `deliver(ids)` (a background task of the request, so a sign-in code leaves at
   once) and the loop of every worker claim due rows: a short transaction moves them to
   `sending` with a lease (`FOR UPDATE SKIP LOCKED`: two workers never claim one row), then the
   provider is called with no transaction open, then a second short transaction records the
   outcome, guarded by the attempt number so a late answer never overwrites a newer claim.
3. Retryable failures (5xx, 429 with its Retry-After, network) go back to `queued` with an
   exponential back-off with jitter; permanent ones (an invalid number) become `failed`; after
   SPEAN_SMS_MAX_ATTEMPTS attempts too.

At least once, at most one extra: if a worker dies after Twilio accepted a message but before the
outcome was recorded, the lease runs out and the message is sent again (Twilio's Messages API
has no idempotency key). The lease (60 s) is far longer than the SDK's timeout (10 s), so a slow
send is never claimed twice by a live worker; the idempotency key makes the ROW unique, so a
change retried whole (api.transaction) never queues a message twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, overload

import phonenumbers
import structlog
from prometheus_client import Counter

from infra import outage, redis_keys
from infra.background import in_background
from infra.db import Connection, Pool
from infra.redis_client import RedisClient
from sms import segments, texts
from sms.sender import SmsRejected, SmsRetryable, SmsSender

log = structlog.get_logger(__name__)

SENT = Counter("spean_sms_sent_total", "Outbound SMS by outcome", ["outcome"])
REFUSED = Counter("spean_sms_refused_total", "Outbound SMS refused before sending", ["reason"])
BUDGET_TRIPS = Counter("spean_sms_budget_trips_total", "Outbound SMS refused because a budget was spent", ["budget"])

LEASE_S = 60
POLL_S = 1.0
BATCH = 20


@dataclass(frozen=True)
class OutboxPolicy:
    countries: frozenset[str]
    hourly_budget: int
    max_attempts: int
    status_callback_url: str | None


class Rendered(NamedTuple):
    """A message already rendered from the catalogues, to record under `key` (`record_many`).
    Essential: sent despite STOP (sign-in codes); secret: its text is not kept if refused."""

    to: str
    body: str
    template: str
    language: str
    key: str
    essential: bool = False
    secret: bool = False


def policy_from(countries: str, hourly_budget: int, max_attempts: int, public_base_url: str) -> OutboxPolicy:
    return OutboxPolicy(
        countries=frozenset(c.strip().upper() for c in countries.split(",") if c.strip()),
        hourly_budget=hourly_budget,
        max_attempts=max_attempts,
        status_callback_url=public_base_url.rstrip("/") + "/v1/sms/status",
    )


def backoff_s(attempts: int) -> float:
    """Exponential from 2 s, capped at 10 minutes, with jitter so retries do not march in step."""
    ceiling = min(600.0, 2.0 * 2 ** max(attempts - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not secrecy


def budget_key() -> str:
    """This hour's counter of the global budget (a fixed window, one key per UTC hour)."""
    return redis_keys.sms_budget(datetime.now(UTC).strftime("%Y%m%d%H"))


class SmsOutbox:
    def __init__(self, pool: Pool, redis: RedisClient, sender: SmsSender, policy: OutboxPolicy) -> None:
        self._pool = pool
        self._redis = redis
        self._sender = sender
        self._policy = policy
        self._wake = asyncio.Event()

    # -- 1. in the caller's transaction ------------------------------------------------------

    async def enqueue(
        self,
        conn: Connection,
        *,
        to: str,
        template: str,
        language: str,
        key: str,
        values: Mapping[str, object] | None = None,
        essential: bool = False,
        secret: bool = False,
    ) -> uuid.UUID | None:
        """Record one message (from the catalogues: `template` in `language`) in `conn`'s
        transaction; its id if it is to be sent, None if refused or already recorded under `key`."""
        body = texts.text(language, template, **(values or {}))
        message_id, _ = await self.record(
            conn, to=to, body=body, template=template, language=language, key=key, essential=essential, secret=secret
        )
        return message_id

    async def record(
        self,
        conn: Connection,
        *,
        to: str,
        body: str,
        template: str,
        language: str,
        key: str,
        essential: bool = False,
        secret: bool = False,
    ) -> tuple[uuid.UUID | None, str | None]:
        """Record a message already rendered from the catalogues (a notification's text) under the
        same rules: (its id if it is to be sent, the reason it was refused)."""
        message = Rendered(to, body, template, language, key, essential, secret)
        return (await self.record_many(conn, [message]))[0]

    async def record_many(
        self, conn: Connection, messages: Sequence[Rendered]
    ) -> list[tuple[uuid.UUID | None, str | None]]:
        """Record rendered messages in `conn`'s transaction, in at most two statements and one
        budget count for the lot. The rules, in order: the country, then STOP (unless essential),
        then this hour's budget, spent in the messages' order. Each answer: (its id if it is to be
        sent, None if refused or already recorded under its key; the reason it was refused)."""
        if not messages:
            return []
        refusals: list[str | None] = [
            None if _region(m.to) in self._policy.countries else "country_not_allowed" for m in messages
        ]
        asked = list({m.to for m, r in zip(messages, refusals, strict=True) if r is None and not m.essential})
        stopped = set(
            await conn.fetchval(
                "SELECT coalesce(array_agg(phone), '{}') FROM sms_opt_outs WHERE phone = ANY($1::text[])", asked
            )
            if asked
            else ()
        )
        refusals = [
            r or ("opted_out" if m.to in stopped and not m.essential else None)
            for m, r in zip(messages, refusals, strict=True)
        ]
        spending = [i for i, r in enumerate(refusals) if r is None]
        allowed = await self.spend_budget(len(spending)) if spending else 0
        for i in spending[allowed:]:
            refusals[i] = "hourly_budget"
        ids = [uuid.uuid4() for _ in messages]
        sizes = [segments.count(m.body) for m in messages]
        inserted = set(
            await conn.fetchval(
                """WITH added AS (
                       INSERT INTO sms_messages (id, idempotency_key, to_phone, template, language, body, secret,
                                                 essential, segments, encoding, status, last_error)
                       SELECT id, key, to_phone, template, language,
                              CASE WHEN secret AND refusal IS NOT NULL THEN NULL ELSE body END, secret, essential,
                              parts, encoding, CASE WHEN refusal IS NULL THEN 'queued' ELSE 'refused' END, refusal
                         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                     $7::int[], $8::text[], $9::text[], $10::bool[], $11::bool[])
                              AS m (id, key, to_phone, template, language, body, parts, encoding, refusal, secret,
                                    essential)
                       ON CONFLICT (idempotency_key) DO NOTHING RETURNING id)
                   SELECT coalesce(array_agg(id), '{}') FROM added""",
                ids,
                [m.key for m in messages],
                [m.to for m in messages],
                [m.template for m in messages],
                [m.language if m.language in texts.LANGUAGES else texts.FALLBACK for m in messages],
                [m.body for m in messages],
                [size.parts for size in sizes],
                [size.encoding for size in sizes],
                refusals,
                [m.secret for m in messages],
                [m.essential for m in messages],
            )
        )
        answers: list[tuple[uuid.UUID | None, str | None]] = []
        for m, message_id, refusal in zip(messages, ids, refusals, strict=True):
            if refusal:
                REFUSED.labels(reason=refusal).inc()
                log.info("sms_refused", reason=refusal, to=m.to, template=m.template)
                answers.append((None, refusal))
            else:
                answers.append((message_id if message_id in inserted else None, None))
        return answers

    def allowed_country(self, phone: str) -> bool:
        return _region(phone) in self._policy.countries

    @overload
    async def spend_budget(self) -> bool: ...
    @overload
    async def spend_budget(self, count: int) -> int: ...
    async def spend_budget(self, count: int | None = None) -> bool | int:
        """Count one SMS (or `count`) against this hour's global budget: whether it may go (how
        many of them may, the first ones); a metric and a log line once spent."""
        key = budget_key()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, 1 if count is None else count)
            pipe.expire(key, 7200, nx=True)
            used, _ = await pipe.execute()
        spent = 1 if count is None else count
        allowed = max(0, min(spent, self._policy.hourly_budget - (int(used) - spent)))
        if allowed < spent:
            BUDGET_TRIPS.labels(budget="hourly").inc()
            log.warning("sms_budget_tripped", budget="hourly", limit=self._policy.hourly_budget, used=int(used))
        return allowed == 1 if count is None else allowed

    # -- 2. after commit ---------------------------------------------------------------------

    async def deliver(self, ids: Iterable[uuid.UUID]) -> None:
        """Send these messages now (after their transaction committed); what fails here is left
        to the loop. Run as a request's background task, so a sign-in code leaves at once."""
        wanted = [i for i in ids if i is not None]
        if not wanted:
            return
        try:
            for row in await self._claim(len(wanted), wanted):
                await self._send(row)
        except Exception as exc:  # the rows stay due: the loop sends them
            if (dependency := outage.unavailable(exc)) is None:
                log.exception("sms_deliver_failed")
            else:
                dependency.down(exc)  # logged once per outage
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Claim and send one batch of due messages; how many were claimed."""
        rows = await self._claim(BATCH, None)
        for row in rows:
            await self._send(row)
        return len(rows)

    async def run_forever(self) -> None:
        pause = outage.Backoff()
        while True:
            try:
                while await self.run_once() == BATCH:
                    pass
            except Exception as exc:  # never kill the worker: the rows stay due
                if (dependency := outage.unavailable(exc)) is None:
                    log.exception("sms_loop_failed")
                else:
                    dependency.down(exc)
                await asyncio.sleep(pause.next())
                continue
            pause.reset()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        return in_background(self.run_forever())

    async def _claim(self, limit: int, ids: list[uuid.UUID] | None) -> list[Any]:
        async with self._pool.acquire() as conn, conn.transaction():
            return list(
                await conn.fetch(
                    """UPDATE sms_messages m
                          SET status = 'sending', attempts = m.attempts + 1,
                              lease_until = now() + make_interval(secs => $3), updated_at = now()
                        WHERE m.id IN (
                              SELECT id FROM sms_messages
                               WHERE status IN ('queued', 'sending') AND next_attempt_at <= now()
                                 AND (lease_until IS NULL OR lease_until < now())
                                 AND ($2::uuid[] IS NULL OR id = ANY($2))
                               ORDER BY next_attempt_at LIMIT $1
                               FOR UPDATE SKIP LOCKED)
                    RETURNING m.id, m.to_phone, m.body, m.attempts, m.idempotency_key""",
                    limit,
                    ids,
                    float(LEASE_S),
                )
            )

    async def _send(self, row: Any) -> None:
        try:
            provider_id = await self._sender.send(
                row["to_phone"],
                row["body"],
                key=row["idempotency_key"],
                status_callback=self._policy.status_callback_url,
            )
        except SmsRejected as exc:
            await self._settle(row, "failed", error=exc.reason)
            SENT.labels(outcome="rejected").inc()
            log.warning("sms_rejected", id=str(row["id"]), reason=exc.reason)
            return
        except SmsRetryable as exc:
            if row["attempts"] >= self._policy.max_attempts:
                await self._settle(row, "failed", error=exc.reason)
                SENT.labels(outcome="gave_up").inc()
                log.warning("sms_gave_up", id=str(row["id"]), reason=exc.reason, attempts=row["attempts"])
                return
            delay = exc.retry_after_s if exc.retry_after_s is not None else backoff_s(row["attempts"])
            await self._retry_later(row, delay, exc.reason)
            SENT.labels(outcome="retried").inc()
            log.info("sms_retry", id=str(row["id"]), reason=exc.reason, in_s=round(delay, 1))
            return
        await self._settle(row, "sent", provider_id=provider_id)
        SENT.labels(outcome="sent").inc()

    async def _settle(self, row: Any, status: str, *, provider_id: str | None = None, error: str | None = None) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                """UPDATE sms_messages
                      SET status = $3, provider_id = coalesce($4, provider_id), last_error = $5,
                          lease_until = NULL, updated_at = now(),
                          body = CASE WHEN secret THEN NULL ELSE body END
                    WHERE id = $1 AND attempts = $2 AND status = 'sending'""",
                row["id"],
                row["attempts"],
                status,
                provider_id,
                error,
            )

    async def _retry_later(self, row: Any, delay_s: float, error: str) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                """UPDATE sms_messages
                      SET status = 'queued', last_error = $3, lease_until = NULL, updated_at = now(),
                          next_attempt_at = now() + make_interval(secs => $4)
                    WHERE id = $1 AND attempts = $2 AND status = 'sending'""",
                row["id"],
                row["attempts"],
                error,
                float(delay_s),
            )


_RANK = {"sent": 1, "undelivered": 2, "failed": 2, "delivered": 3}
_TWILIO_STATUS = {
    "queued": "sent",
    "accepted": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
}


async def record_status(conn: Connection, provider_id: str, provider_status: str, error_code: str | None) -> bool:
    """A delivery report: move the message forward (callbacks arrive out of order; never back)."""
    status = _TWILIO_STATUS.get(provider_status)
    if status is None:
        return False
    result = await conn.execute(
        """UPDATE sms_messages SET status = $2, last_error = coalesce($3, last_error), updated_at = now()
            WHERE provider_id = $1 AND status IN ('sending', 'sent', 'delivered', 'undelivered', 'failed')
              AND (CASE status WHEN 'sent' THEN 1 WHEN 'undelivered' THEN 2 WHEN 'failed' THEN 2
                               WHEN 'delivered' THEN 3 ELSE 0 END) < $4""",
        provider_id,
        status,
        f"twilio {error_code}" if error_code else None,
        _RANK[status],
    )
    return result != "UPDATE 0"


def _region(phone: str) -> str | None:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return None
