"""The outbox worker: plans messages from outbox events, then delivers them, at least once.

Planning (outbox → notifications) is one transaction per batch: the events are locked with
FOR UPDATE SKIP LOCKED, their messages inserted under unique keys, the events marked processed.
A worker that dies mid-plan rolls back; nothing is half-planned and nothing planned twice.

Delivery cannot sit inside a transaction (a provider call is not undone by ROLLBACK), so each
message is claimed with a lease: claimed_by/claimed_until set by one UPDATE over rows picked
with SKIP LOCKED. Two workers never hold the same message; a dead worker's claims are taken back
when the lease passes, so a message is lost by nobody and resent only if the worker died between
the provider's answer and recording it (the push carries its id, "nid", for the app to show once).
Every outcome is written only by the worker holding the claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog

from infra import outage
from infra.config import Settings
from infra.db import Connection, Pool
from notifications.plan import CALL_TTL_S, Event, Planned, plan_events
from notifications.push import Outcome, Push, PushSender
from notifications.wake import Wake, first_of
from sms.outbox import Rendered, SmsOutbox

log = structlog.get_logger("spean.notifications")

PLAN_BATCH = 500
SEND_BATCH = 500
BACKOFF_CAP_S = 600.0
LINGER_S = 0.05  # between rounds that were not full: at most this much later, many events a round


class Worker:
    def __init__(
        self, pool: Pool, push: PushSender, sms: SmsOutbox, settings: Settings, *, listen_dsn: str | None = None
    ) -> None:
        self.id = uuid.uuid4()
        self._pool = pool
        self._push = push
        self._sms = sms
        self._settings = settings
        self.wake = Wake(listen_dsn) if listen_dsn else None

    async def run(self, stop: asyncio.Event) -> None:
        """Plan and deliver until `stop` is set; idle, wait for an outbox commit (notifications.wake)
        or SPEAN_WORKER_POLL_MS, whichever comes first."""
        poll_s = self._settings.worker_poll_ms / 1000
        log.info("notification_worker_running", worker=str(self.id), listening=self.wake is not None)
        done = asyncio.Event()  # the listener stops with the loop, however the loop ends
        listener = asyncio.create_task(self.wake.run(done)) if self.wake else None
        try:
            await self._loop(stop, poll_s)
        finally:
            done.set()
            if listener is not None:
                await listener

    async def _loop(self, stop: asyncio.Event, poll_s: float) -> None:
        woken = self.wake.event if self.wake else asyncio.Event()
        while not stop.is_set():
            woken.clear()  # before the work: a commit during it wakes the next round at once
            # Planning and delivery side by side: while one waits on PostgreSQL or FCM the other
            # has the CPU. What this round plans is delivered by the next, which starts at once.
            planned, delivered = await asyncio.gather(self._step(self.plan_once), self._step(self.deliver_once))
            if not planned and not delivered:
                await self._sleep(stop, woken, poll_s)
            elif planned < PLAN_BATCH and delivered < SEND_BATCH:
                # Keeping up: a round costs a dozen statements however few events it takes, so
                # let a few more commit first (never saying it sleeps: no NOTIFY meanwhile).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), LINGER_S)

    async def _sleep(self, stop: asyncio.Event, woken: asyncio.Event, poll_s: float) -> None:
        """Wait for an outbox commit or the next poll. Commits NOTIFY only while a listening
        worker says it sleeps (migration 0021: a NOTIFY serialises committing transactions), so
        a listening worker says so first, until its next poll, and takes it back if woken sooner."""
        said = False
        if self.wake is not None and self.wake.listening:
            try:
                said, waiting = True, await self._say_asleep(poll_s)
            except Exception as exc:  # then polling alone, as when not listening
                _note(exc)
                waiting = False
            if waiting:  # committed before the saying was seen, so not announced: work, not sleep
                woken.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first_of(stop, woken), poll_s)
        if said and (woken.is_set() or stop.is_set()):  # else the saying has run out by itself
            try:
                await self._pool.execute("DELETE FROM outbox_sleepers WHERE worker = $1", self.id)
            except Exception as exc:  # it runs out at the next poll anyway
                _note(exc)

    async def _say_asleep(self, poll_s: float) -> bool:
        """Say this worker sleeps until its next poll; True if outbox events wait already that no
        other worker is planning (those it skips, or it would spin). Rows of workers that died go
        after a day."""
        return bool(
            await self._pool.fetchval(
                """WITH gone AS (DELETE FROM outbox_sleepers WHERE until < now() - interval '1 day'),
                        said AS (INSERT INTO outbox_sleepers (worker, until)
                                 VALUES ($1, now() + make_interval(secs => $2))
                                 ON CONFLICT (worker) DO UPDATE SET until = EXCLUDED.until)
                   SELECT EXISTS (SELECT FROM outbox WHERE processed_at IS NULL AND available_at <= now()
                                  LIMIT 1 FOR UPDATE SKIP LOCKED)""",
                self.id,
                poll_s,
            )
        )

    async def _step(self, step: Callable[[], Awaitable[int]]) -> int:
        try:
            return await step()
        except Exception as exc:
            dependency = outage.unavailable(exc)
            if dependency is None:
                log.exception("notification_worker_error")
            else:
                dependency.down(exc)
            return 0

    # -- planning ---------------------------------------------------------------------------

    async def plan_once(self) -> int:
        """Plan a batch of events in one transaction; if one of them fails, the batch is planned
        again event by event, each in a savepoint, so one bad event holds up no other."""
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    # Taken and marked planned in one statement: the mark is undone with the
                    # transaction if the plan fails, and locks the rows as FOR UPDATE would.
                    events = _events(
                        await conn.fetch(
                            """UPDATE outbox SET processed_at = now()
                                WHERE id IN (SELECT id FROM outbox WHERE processed_at IS NULL AND available_at <= now()
                                              ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
                            RETURNING id, topic, payload""",
                            PLAN_BATCH,
                        )
                    )
                    await _insert(conn, await plan_events(conn, events, self._settings.reminder_offsets_min))
                return len(events)
            except Exception as exc:
                if outage.unavailable(exc) is not None:
                    raise
            return await self._plan_one_by_one(conn)

    async def _plan_one_by_one(self, conn: Connection) -> int:
        async with conn.transaction():
            events = _events(await _lock_events(conn))
            for event in events:
                try:
                    async with conn.transaction():  # a savepoint
                        await _insert(conn, await plan_events(conn, [event], self._settings.reminder_offsets_min))
                        await conn.execute("UPDATE outbox SET processed_at = now() WHERE id = $1", event.id)
                except Exception as exc:
                    if outage.unavailable(exc) is not None:
                        raise
                    log.exception("outbox_event_unplanned", outbox_id=event.id, topic=event.topic)
                    await conn.execute(
                        """UPDATE outbox SET attempts = attempts + 1,
                                  available_at = now() + make_interval(secs => least(600, 2 ^ attempts))
                            WHERE id = $1""",
                        event.id,
                    )
        return len(events)

    # -- delivery ---------------------------------------------------------------------------

    async def deliver_once(self) -> int:
        claimed = await self._claim()
        if not claimed:
            return 0
        pushes: list[tuple[dict[str, Any], Push, uuid.UUID]] = []
        sms: list[dict[str, Any]] = []
        async with self._pool.acquire() as conn:
            # SMS preferred but no phone: a push, if there is a device
            by_push = [n for n in claimed if not (n["channel"] == "sms" and n["phone"])]
            live = await _live_devices(conn, by_push)
            due = await _still_due(conn, [n for n in claimed if n["kind"].startswith("reminder_")])
            ended: list[tuple[dict[str, Any], str, str | None]] = []
            unreached: list[tuple[dict[str, Any], str]] = []
            for n in claimed:
                if n["kind"].startswith("reminder_") and n["id"] not in due:
                    ended.append((n, "cancelled", "the appointment moved or was cancelled"))
                    continue
                if n["channel"] == "sms" and n["phone"]:
                    sms.append(n)
                    continue
                devices = live.get(n["id"])
                if devices:
                    pushes += [(n, _push(n, token), device_id) for device_id, token in devices]
                else:
                    unreached.append((n, "no live device"))
            # Settled together: a statement per message was most of the worker's CPU for people
            # without a device (hundreds in a batch).
            await self._finish_all(conn, ended)
            await self._fall_back_all(conn, unreached)
        await asyncio.gather(self._send_pushes(pushes), self._send_sms(sms))
        return len(claimed)

    async def _claim(self) -> list[dict[str, Any]]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """UPDATE notifications
                      SET claimed_by = $1, claimed_until = now() + make_interval(secs => $2),
                          attempts = attempts + 1, updated_at = now()
                    WHERE id IN (SELECT id FROM notifications
                                  WHERE state = 'pending' AND available_at <= now()
                                    AND (claimed_until IS NULL OR claimed_until < now())
                                  ORDER BY available_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                RETURNING id, key, kind, priority, user_id, patient_id, appointment_id, phone, language, title, body,
                          data, channel, attempts""",
                self.id,
                float(self._settings.worker_lease_s),
                SEND_BATCH,
            )
        return [dict(r) for r in rows]

    async def _send_pushes(self, pushes: list[tuple[dict[str, Any], Push, uuid.UUID]]) -> None:
        if not pushes:
            return
        outcomes = await self._push.send([p for _, p, _ in pushes])
        by_notification: dict[uuid.UUID, list[Outcome]] = defaultdict(list)
        rows: dict[uuid.UUID, dict[str, Any]] = {}
        async with self._pool.acquire() as conn:
            for (n, _, device_id), outcome in zip(pushes, outcomes, strict=True):
                rows[n["id"]] = n
                by_notification[n["id"]].append(outcome)
                if outcome.verdict == "dead_token":  # retired at once: never tried again
                    await conn.execute(
                        """UPDATE devices SET retired_at = now(), retired_why = $2, updated_at = now()
                            WHERE id = $1 AND retired_at IS NULL""",
                        device_id,
                        outcome.error,
                    )
            sent = {nid for nid, results in by_notification.items() if any(r.verdict == "sent" for r in results)}
            await self._finish_sent(conn, list(sent))
            refused: list[tuple[dict[str, Any], str]] = []
            for nid, results in by_notification.items():
                n = rows[nid]
                errors = "; ".join(r.error for r in results if r.error)
                if nid in sent:
                    continue
                if any(r.verdict == "retry" for r in results):
                    after = max((r.retry_after_s or 0.0) for r in results)
                    await self._retry(conn, n, errors, after)
                else:  # every device's token is dead or refused for good
                    refused.append((n, errors))
            await self._fall_back_all(conn, refused)

    async def _send_sms(self, ns: list[dict[str, Any]]) -> None:
        """Hand the messages to the SMS ledger (sms.outbox) in one transaction with their rows' end:
        the ledger applies STOP, the country list and the budget, sends after commit and retries;
        its idempotency key (each notification's) keeps a retried hand-over from queuing it twice."""
        if not ns:
            return
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                answers = await self._sms.record_many(
                    conn,
                    [Rendered(n["phone"], n["body"], n["kind"], n["language"], f"notification:{n['key']}") for n in ns],
                )
                # Refused (STOP, a country outside the list, the hourly budget): not sent, and why.
                await self._finish_all(
                    conn,
                    [
                        (n, "sent", None) if refusal is None else (n, "cancelled", f"sms refused: {refusal}")
                        for n, (_, refusal) in zip(ns, answers, strict=True)
                    ],
                )
        except Exception as exc:
            async with self._pool.acquire() as conn:
                for n in ns:
                    await self._retry(conn, n, f"sms: {exc}", 0.0)
            return
        await self._sms.deliver([message_id for message_id, _ in answers if message_id is not None])

    async def _fall_back_all(self, conn: Connection, unreached: list[tuple[dict[str, Any], str]]) -> None:
        """No push reached these people (each with why): SMS instead, not for a silent sync, which
        says nothing; two statements for the lot."""
        to_sms = [(n, why) for n, why in unreached if n["priority"] != "silent" and n["phone"]]
        if to_sms:
            await conn.execute(
                """UPDATE notifications n
                      SET channel = 'sms', available_at = now(), claimed_by = NULL, claimed_until = NULL,
                          last_error = u.why, updated_at = now()
                     FROM unnest($1::uuid[], $3::text[]) AS u (id, why)
                    WHERE n.id = u.id AND n.claimed_by = $2""",
                [n["id"] for n, _ in to_sms],
                self.id,
                [why for _, why in to_sms],
            )
        await self._finish_all(
            conn,
            [
                (n, "cancelled", why) if n["priority"] == "silent" else (n, "failed", f"{why}; no phone for SMS")
                for n, why in unreached
                if n["priority"] == "silent" or not n["phone"]
            ],
        )

    async def _retry(self, conn: Connection, n: dict[str, Any], error: str, retry_after_s: float) -> None:
        if n["attempts"] >= self._settings.notify_max_attempts:
            await self._finish(conn, n, state="failed", error=f"gave up after {n['attempts']} tries: {error}")
            return
        base = self._settings.notify_backoff_ms / 1000 * 2 ** (n["attempts"] - 1)
        delay = max(retry_after_s, min(BACKOFF_CAP_S, base) * random.uniform(0.5, 1.5))  # noqa: S311  # jitter
        await conn.execute(
            """UPDATE notifications
                  SET available_at = now() + make_interval(secs => $3), claimed_by = NULL, claimed_until = NULL,
                      last_error = $4, updated_at = now()
                WHERE id = $1 AND claimed_by = $2""",
            n["id"],
            self.id,
            delay,
            error,
        )

    async def _finish_sent(self, conn: Connection, ids: list[uuid.UUID]) -> None:
        """The pushes FCM accepted, recorded in one statement (a batch is hundreds)."""
        if not ids:
            return
        done = await conn.fetchval(
            """WITH done AS (
                   UPDATE notifications
                      SET state = 'sent', sent_at = now(), claimed_by = NULL, claimed_until = NULL, updated_at = now()
                    WHERE id = ANY($1::uuid[]) AND claimed_by = $2
                RETURNING 1)
               SELECT count(*) FROM done""",
            ids,
            self.id,
        )
        if done != len(ids):
            log.warning("notification_claim_lost", lost=len(ids) - done, worker=str(self.id))

    async def _finish(self, conn: Connection, n: dict[str, Any], *, state: str, error: str | None = None) -> None:
        done = await conn.fetchval(
            """UPDATE notifications
                  SET state = $3, sent_at = CASE WHEN $3 = 'sent' THEN now() END, claimed_by = NULL,
                      claimed_until = NULL, last_error = coalesce($4, last_error), updated_at = now()
                WHERE id = $1 AND claimed_by = $2
            RETURNING 1""",
            n["id"],
            self.id,
            state,
            error,
        )
        if done is None:
            log.warning("notification_claim_lost", notification=str(n["id"]), worker=str(self.id))
        elif state == "failed":
            log.warning("notification_dead_lettered", notification=str(n["id"]), kind=n["kind"], error=error)

    async def _finish_all(self, conn: Connection, ends: list[tuple[dict[str, Any], str, str | None]]) -> None:
        """`_finish` for many messages (each with its state and error) in one statement."""
        if not ends:
            return
        done = set(
            await conn.fetchval(
                """WITH done AS (
                       UPDATE notifications n
                          SET state = e.state, sent_at = CASE WHEN e.state = 'sent' THEN now() END, claimed_by = NULL,
                              claimed_until = NULL, last_error = coalesce(e.error, n.last_error), updated_at = now()
                         FROM unnest($1::uuid[], $3::text[], $4::text[]) AS e (id, state, error)
                        WHERE n.id = e.id AND n.claimed_by = $2
                    RETURNING n.id)
                   SELECT coalesce(array_agg(id), '{}') FROM done""",
                [n["id"] for n, _, _ in ends],
                self.id,
                [state for _, state, _ in ends],
                [error for _, _, error in ends],
            )
        )
        for n, state, error in ends:
            if n["id"] not in done:
                log.warning("notification_claim_lost", notification=str(n["id"]), worker=str(self.id))
            elif state == "failed":
                log.warning("notification_dead_lettered", notification=str(n["id"]), kind=n["kind"], error=error)


async def _lock_events(conn: Connection) -> list[Any]:
    return list(
        await conn.fetch(
            """SELECT id, topic, payload FROM outbox
                WHERE processed_at IS NULL AND available_at <= now()
                ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
            PLAN_BATCH,
        )
    )


def _events(rows: list[Any]) -> list[Event]:
    return sorted((Event(r["id"], r["topic"], r["payload"]) for r in rows), key=lambda e: e.id)


async def _insert(conn: Connection, planned: list[tuple[int, Planned]]) -> None:
    """The batch's messages in one statement (column arrays, not a row per execution)."""
    if not planned:
        return
    await conn.execute(
        """INSERT INTO notifications (key, outbox_id, kind, priority, user_id, patient_id, appointment_id, phone,
                                      language, title, body, data, channel, available_at)
           SELECT key, outbox_id, kind, priority, user_id, patient_id, appointment_id, phone, language, title, body,
                  data::jsonb, channel, coalesce(available_at, now())
             FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::uuid[], $6::uuid[], $7::uuid[],
                         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                         $14::timestamptz[])
                  AS n (key, outbox_id, kind, priority, user_id, patient_id, appointment_id, phone, language, title,
                        body, data, channel, available_at)
           ON CONFLICT (key) DO NOTHING""",
        [p.key for _, p in planned],
        [outbox_id for outbox_id, _ in planned],
        [p.kind for _, p in planned],
        [p.priority for _, p in planned],
        [p.user_id for _, p in planned],
        [p.patient_id for _, p in planned],
        [p.appointment_id for _, p in planned],
        [p.phone for _, p in planned],
        [p.language for _, p in planned],
        [p.title for _, p in planned],
        [p.body for _, p in planned],
        [_JSON.encode(p.data).decode() for _, p in planned],
        [p.channel for _, p in planned],
        [p.available_at for _, p in planned],
    )


_JSON = msgspec.json.Encoder()


async def _still_due(conn: Connection, reminders: list[dict[str, Any]]) -> set[uuid.UUID]:
    """The reminders whose appointment is still booked at the time they were planned for."""
    if not reminders:
        return set()
    rows = await conn.fetch(
        """SELECT r.id FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS r (id, appointment_id, start_at)
             JOIN appointments a ON a.id = r.appointment_id AND a.status = 'booked' AND a.start_at = r.start_at""",
        [n["id"] for n in reminders],
        [n["appointment_id"] for n in reminders],
        [dt.datetime.fromisoformat(n["data"]["start"]) for n in reminders],
    )
    return {r["id"] for r in rows}


Devices = dict[uuid.UUID, list[tuple[uuid.UUID, str]]]  # notification id → (device id, FCM token)


async def _live_devices(conn: Connection, claimed: list[dict[str, Any]]) -> Devices:
    """Each message's live devices: the staff member's, or those of every login acting for the
    patient; one query for the whole batch."""
    if not claimed:
        return {}
    rows = await conn.fetch(
        """WITH n AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS n (id, user_id, patient_id)),
                who AS (SELECT id, user_id FROM n WHERE user_id IS NOT NULL
                        UNION
                        SELECT n.id, a.user_id FROM n JOIN patient_accounts a ON a.patient_id = n.patient_id)
           SELECT who.id AS nid, d.id, d.token
             FROM who JOIN devices d ON d.user_id = who.user_id AND d.retired_at IS NULL
            ORDER BY who.id, d.id""",
        [n["id"] for n in claimed],
        [n["user_id"] for n in claimed],
        [n["patient_id"] for n in claimed],
    )
    found: Devices = defaultdict(list)
    for r in rows:
        found[r["nid"]].append((r["id"], r["token"]))
    return found


def _push(n: dict[str, Any], token: str) -> Push:
    kind: str = n["kind"]
    return Push(
        token=token,
        title=n["title"],
        body=n["body"],
        data={**n["data"], "nid": str(n["id"])},
        priority=n["priority"],
        # An offline phone shows only the latest reminder of an appointment, not a pile of them.
        collapse_key=f"reminder-{n['appointment_id']}" if kind.startswith("reminder_") else None,
        ttl_s=CALL_TTL_S if n["priority"] == "high" else None,
    )


def _note(exc: Exception) -> None:
    dependency = outage.unavailable(exc)
    if dependency is None:
        log.exception("notification_worker_error")
    else:
        dependency.down(exc)
