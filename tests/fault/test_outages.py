"""Fault tests with real processes: `spean serve --workers 2` on a PostgreSQL and a Redis of the
test's own, under a load of bookings and record writes, while a worker is SIGKILLed, PostgreSQL
restarts and Redis restarts. Afterwards nothing is lost or doubled, every client got its success
or a retryable 503 + Retry-After (never a 500), /ready went red and green by itself, and while
Redis is away everything that needs only PostgreSQL keeps serving."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.factory import PatientLogin, Scene, auth, iso, next_local
from tests.fault.servers import Server, Stack, own_stack, seeding, wait_until
from tests.realtime.client import Signal

BP = {"kind": "observation", "code": "8310-5", "value": 37.2, "unit": "Cel"}
CLIENTS = 6


@dataclass
class World:
    scene: Scene
    patients: list[uuid.UUID]
    starts: Iterator[str]
    call: uuid.UUID  # an appointment whose room is open
    caller: PatientLogin


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with own_stack("spean-fault-") as stack:
        yield stack


@pytest.fixture(scope="module")
async def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> World:
    """A specialist open around the clock, a CHW and patients: seeded through an in-process app
    with the server's secret key, so its tokens work on the server."""
    async with seeding(stack, tmp_path_factory.mktemp("seed")) as factory:
        scene = await factory.scene()
        await factory.weekly(scene.specialist, start="00:00", end="23:30")
        patients = [await factory.patient(scene.post, token=scene.chw.token) for _ in range(CLIENTS)]
        caller, call = await factory.consultation_soon(scene)
    first = next_local("Asia/Phnom_Penh", "00:00", days_ahead=3)
    starts = (iso(first + timedelta(minutes=30 * i)) for i in itertools.count() if i % 48 != 47)
    return World(scene, patients, starts, call, caller)


@dataclass
class Outcomes:
    """What the phones saw: every answer's status, and what ended in success."""

    statuses: Counter[int] = field(default_factory=Counter)
    dropped: int = 0  # connections that ended without an answer (only a killed worker may cause)
    bookings: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    ok_at: list[float] = field(default_factory=list)  # when a write succeeded (monotonic)


async def _until_done(http: httpx.AsyncClient, path: str, body: Any, token: str, seen: Outcomes) -> Any:
    """POST as a phone does: on a retryable answer, again with the same Idempotency-Key."""
    headers = auth(token, **{"Idempotency-Key": uuid.uuid4().hex})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            response = await http.post(path, json=body, headers=headers)
        except httpx.TransportError:
            seen.dropped += 1
            await asyncio.sleep(0.2)
            continue
        seen.statuses[response.status_code] += 1
        if response.status_code == 201:
            seen.ok_at.append(time.monotonic())
            return response.json()
        if response.status_code == 503:
            problem = response.json()
            assert response.headers["content-type"].startswith("application/problem+json"), response.text
            assert int(response.headers["retry-after"]) > 0, response.headers
            assert problem["code"] in ("database_unavailable", "cache_unavailable"), problem
            await asyncio.sleep(0.2)  # a phone waits Retry-After; the test keeps the pace up
            continue
        seen.failures.append(f"{path}: {response.status_code} {response.text[:300]}")
        return None
    seen.failures.append(f"{path}: no success within 60 s")
    return None


async def _phone(
    http: httpx.AsyncClient, world: World, patient: uuid.UUID, stop: asyncio.Event, seen: Outcomes
) -> None:
    chw = world.scene.chw.token
    while not stop.is_set():
        booking = {
            "patient_id": str(patient),
            "practitioner_id": str(world.scene.specialist.practitioner_id),
            "start": next(world.starts),
        }
        if (booked := await _until_done(http, "/v1/appointments", booking, chw, seen)) is not None:
            seen.bookings.append(booked["id"])
        if (written := await _until_done(http, f"/v1/patients/{patient}/record", BP, chw, seen)) is not None:
            seen.records.append(written["id"])


async def _under_load(
    stack: Stack, world: World, fault: Callable[[], Awaitable[None]]
) -> tuple[Outcomes, list[int | None]]:
    """Run the phones, inject `fault` after a second, watch /ready."""
    seen, ready = Outcomes(), []
    stop = asyncio.Event()

    async def watch_ready() -> None:
        while not stop.is_set():
            ready.append(await asyncio.to_thread(stack.server.ready))
            await asyncio.sleep(0.1)

    async with httpx.AsyncClient(base_url=stack.server.url, timeout=30) as http:
        tasks = [asyncio.create_task(_phone(http, world, p, stop, seen)) for p in world.patients]
        tasks.append(asyncio.create_task(watch_ready()))
        try:
            await asyncio.sleep(1)
            await fault()
            await asyncio.sleep(2)  # and some more load once it is over
        finally:
            stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
    print(f"statuses {dict(seen.statuses)} dropped {seen.dropped} bookings {len(seen.bookings)} ready {ready}")
    return seen, ready


async def _assert_nothing_lost_or_doubled(stack: Stack, seen: Outcomes) -> None:
    errors = [line[:3000] for line in stack.server.log.read_text().splitlines() if "unhandled_error" in line]
    assert not seen.failures, (seen.failures, errors)
    assert 500 not in seen.statuses, (seen.statuses, errors)
    assert seen.bookings, "no booking succeeded"
    assert len(set(seen.bookings)) == len(seen.bookings)
    conn = await asyncpg.connect(stack.database_url)
    try:
        booked = await conn.fetchval(
            "SELECT count(*) FROM appointments WHERE id = ANY($1::uuid[])", [uuid.UUID(b) for b in seen.bookings]
        )
        total = await conn.fetchval("SELECT count(*) FROM appointments")
        written = await conn.fetchval(
            "SELECT count(*) FROM record_entries WHERE id = ANY($1::uuid[])", [uuid.UUID(r) for r in seen.records]
        )
        entries = await conn.fetchval("SELECT count(*) FROM record_entries WHERE kind = 'observation'")
    finally:
        await conn.close()
    # Every 201 is in the database once, and nothing else is: a retried request never doubled.
    assert booked == len(seen.bookings)
    assert written == len(seen.records)
    assert (total, entries) == (stack_totals[0] + len(seen.bookings), stack_totals[1] + len(seen.records))


stack_totals = [0, 0]  # rows before each test's load (the tests share one database)


@pytest.fixture(autouse=True)
async def _totals(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.database_url)
    try:
        with_table = await conn.fetchval("SELECT to_regclass('appointments') IS NOT NULL")
        if with_table:
            stack_totals[0] = await conn.fetchval("SELECT count(*) FROM appointments")
            stack_totals[1] = await conn.fetchval("SELECT count(*) FROM record_entries WHERE kind = 'observation'")
    finally:
        await conn.close()


def _went_red_then_green(ready: list[int | None]) -> bool:
    red = next((i for i, status in enumerate(ready) if status == 503), None)
    return red is not None and 200 in ready[red:]


async def test_a_killed_worker_is_replaced_and_no_request_fails(stack: Stack, world: World) -> None:
    killed: list[int] = []

    async def kill() -> None:
        killed.append(stack.server.kill_worker())
        await asyncio.to_thread(_wait_for_replacement, stack.server, killed[0])

    seen, _ = await _under_load(stack, world, kill)
    # Requests in flight on the killed worker lost their connection (nothing is left to answer
    # them); their retries with the same key succeeded, which is what is checked here.
    await _assert_nothing_lost_or_doubled(stack, seen)


async def test_postgres_restart_answers_503_and_a_worker_replaced_meanwhile_starts(stack: Stack, world: World) -> None:
    async def restart() -> None:
        await asyncio.to_thread(stack.postgres.stop)
        # A worker that dies while PostgreSQL is away: its replacement must start (degraded),
        # and the server must not exit.
        victim = stack.server.kill_worker()
        await asyncio.to_thread(_wait_for_replacement, stack.server, victim)
        # Joining a call needs PostgreSQL: the socket is closed with 1013 (try again later).
        joining = await Signal.open(stack.server.url.replace("http", "ws"))
        await joining.send(type="auth", token=world.caller.token)
        await joining.send(type="join", appointment_id=str(world.call))
        assert await joining.closed_with() == 1013
        assert any(m.get("code") == "database_unavailable" for m in joining.seen), joining.seen
        await asyncio.to_thread(stack.postgres.start)

    seen, ready = await _under_load(stack, world, restart)
    await _assert_nothing_lost_or_doubled(stack, seen)
    assert seen.statuses[503] > 0, seen.statuses
    assert seen.dropped == 0  # every request got an answer: success or a retryable 503
    assert _went_red_then_green(ready), ready
    assert stack.server.ready() == 200


async def test_redis_restart_keeps_postgres_routes_serving_and_the_call_resumes(stack: Stack, world: World) -> None:
    ws = stack.server.url.replace("http", "ws")
    specialist, patient = await Signal.open(ws), await Signal.open(ws)
    joined = await specialist.join(world.scene.specialist.token, world.call)
    waiting = await patient.join(world.caller.token, world.call)
    await specialist.send(type="admit", peer=waiting["peer"])
    await patient.next("admitted")
    during: dict[str, Any] = {}

    async def restart() -> None:
        await asyncio.to_thread(stack.redis.stop)
        down_at = time.monotonic()
        # Signing in needs Redis (one-time codes): a retryable 503 with its code.
        async with httpx.AsyncClient(base_url=stack.server.url, timeout=30) as http:
            answer = await http.post("/v1/auth/otp", json={"phone": "+855971234567"})
        during["otp"] = (answer.status_code, answer.headers.get("retry-after"), answer.json().get("code"))
        during["otp_s"] = time.monotonic() - down_at
        # Relaying needs Redis: the sender is told so and closed with 1013, to resume later.
        await specialist.send(type="chat", text="still there?")
        during["rtc"] = await specialist.closed_with(within=15)
        during["rtc_error"] = [m.get("code") for m in specialist.seen if m["type"] == "error"]
        victim = stack.server.kill_worker()
        await asyncio.to_thread(_wait_for_replacement, stack.server, victim)
        during["window"] = (down_at, time.monotonic())
        await asyncio.to_thread(stack.redis.start)

    seen, ready = await _under_load(stack, world, restart)
    await _assert_nothing_lost_or_doubled(stack, seen)
    assert during["otp"] == (503, "3", "cache_unavailable"), during
    assert during["rtc"] == 1013, during
    assert "cache_unavailable" in during["rtc_error"], during
    down_at, up_at = during["window"]
    assert any(down_at < at < up_at for at in seen.ok_at), "no write succeeded while Redis was away"
    assert 503 not in seen.statuses, seen.statuses  # bookings and record writes need no Redis
    assert _went_red_then_green(ready), ready

    # Both peers resume their places (the patient's socket may have been on the killed worker):
    # Redis kept the room (append-only file), and the call goes on.
    await patient.close()
    back = await Signal.open(ws)
    resumed = await back.join(world.scene.specialist.token, world.call, resume=joined["session"])
    assert (resumed["resumed"], resumed["state"]) == (True, "admitted")
    patient = await Signal.open(ws)
    rejoined = await patient.join(world.caller.token, world.call, resume=waiting["session"])
    assert (rejoined["resumed"], rejoined["state"]) == (True, "admitted")
    await _relayed(back, patient, joined["peer"], waiting["peer"])
    await _relayed(patient, back, waiting["peer"], joined["peer"])
    await back.close()
    await patient.close()

    log = stack.server.log.read_text()
    # Each worker said once that Redis went away (and once that it returned): no traceback loop.
    assert log.count("dependency_unavailable") <= 2 * 5, log[-3000:]
    first = log.find("Traceback")
    assert first < 0, log[log.rfind("\n", 0, first) + 1 : log.find("\n", first)][-3000:]
    print(f"otp answered 503 after {during['otp_s']:.2f} s")


async def _relayed(sender: Signal, receiver: Signal, sender_peer: str, receiver_peer: str) -> None:
    """A message reaches the other peer. Pub/sub is at-most-once and a worker resubscribes after a
    short pause, so the sender repeats, as a client repeats an offer (ICE restart)."""
    for _ in range(20):
        await sender.send(type="offer", to=receiver_peer, sdp="v=0 after the outage")
        try:
            offer = await receiver.next("offer", within=0.5)
        except TimeoutError:
            continue
        assert offer["from"] == sender_peer
        return
    raise AssertionError(f"nothing relayed after the outage: {receiver.seen}")


async def test_a_server_started_while_both_are_away_serves_once_they_return(stack: Stack, world: World) -> None:
    """`spean serve` with PostgreSQL and Redis both down: it starts (migrations are left to the
    workers, in the background), /ready is 503, and it serves by itself once they are back."""
    await asyncio.to_thread(stack.postgres.stop)
    await asyncio.to_thread(stack.redis.stop)
    second = Server(stack.server.env, stack.server.log.with_name("second.log"))
    try:
        second.launch()
        await asyncio.to_thread(
            wait_until, lambda: second.ready() == 503 and len(second.workers()) == 2, 60, "", second
        )
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
            checks = (await http.get("/ready")).json()["checks"]
            # Migrations wait for PostgreSQL in the background, in the workers.
            assert checks["migrations"] == "pending", checks
            assert checks["postgres"].startswith("error"), checks
            assert checks["redis"].startswith("error"), checks
            refused = await http.get("/v1/facilities", headers=world.scene.chw.headers)
            assert refused.status_code == 503, refused.text
            assert (refused.json()["code"], refused.headers["retry-after"]) == ("database_unavailable", "3")
            await asyncio.to_thread(time.sleep, 1)
            assert second.proc is not None
            assert second.proc.poll() is None, second.log.read_text()[-5000:]
            await asyncio.to_thread(stack.postgres.start)
            await asyncio.to_thread(stack.redis.start)
            await asyncio.to_thread(wait_until, lambda: second.ready() == 200, 30, "not ready again", second)
            seen = Outcomes()
            await _phone_once(http, world, seen)
            # The other worker may still be waiting out its back-off: a retryable 503 at worst.
            assert seen.statuses[201] == 2, (seen.statuses, seen.failures)
            assert set(seen.statuses) <= {201, 503}, seen.statuses
    finally:
        second.stop()
        await asyncio.to_thread(stack.postgres.start_if_stopped)
        if stack.redis.proc is None:
            await asyncio.to_thread(stack.redis.start)


async def _phone_once(http: httpx.AsyncClient, world: World, seen: Outcomes) -> None:
    booking = {
        "patient_id": str(world.patients[0]),
        "practitioner_id": str(world.scene.specialist.practitioner_id),
        "start": next(world.starts),
    }
    chw = world.scene.chw.token
    assert await _until_done(http, "/v1/appointments", booking, chw, seen) is not None
    assert await _until_done(http, f"/v1/patients/{world.patients[0]}/record", BP, chw, seen) is not None


def _wait_for_replacement(server: Server, victim: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = [w.pid for w in server.workers()]
        if len(pids) == 2 and victim not in pids:
            time.sleep(1)  # long enough for a failing start-up to have exited
            assert server.proc is not None
            assert server.proc.poll() is None, server.log.read_text()[-5000:]
            assert len(server.workers()) == 2, server.log.read_text()[-5000:]
            return
        time.sleep(0.1)
    raise AssertionError(f"worker {victim} was not replaced:\n{server.log.read_text()[-5000:]}")
