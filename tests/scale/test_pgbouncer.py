"""Spean through Debian's PgBouncer (1.18) in transaction mode.

`spean serve --workers 2`, `spean worker` and the CLI reach PostgreSQL only through a PgBouncer
that shares four server connections among all of them (SPEAN_DB_POOLER=transaction; migrations
and the worker's LISTEN use DATABASE_MIGRATE_URL, PostgreSQL itself). Under a load of booking
races, record writes and reads and sign-ins nothing fails; afterwards no server connection holds
a named prepared statement, so none can be run by another client in place of its own. Plain
asyncpg (its statement cache on) fails through the same PgBouncer: the hazard is real here, and
a Spean pool told it reaches PostgreSQL directly refuses a pooler.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from infra import db
from infra.config import load_settings
from infra.migrate import discover, migrate
from infra.pooling import PoolerMismatch
from spean.app import create_app
from tests.factory import Factory, Scene, auth, iso, new_phone, next_local
from tests.fault.servers import OwnPostgres, Server, wait_until
from tests.scale.servers import PgBouncer, until

BODY_TEMPERATURE = {"kind": "observation", "code": "8310-5", "value": 37.2, "unit": "Cel"}


@dataclass
class Bounced:
    primary: OwnPostgres
    bouncer: PgBouncer
    server: Server
    env: dict[str, str]
    worker_log: Path


@pytest.fixture(scope="module")
def bounced(primary: OwnPostgres, servers: tuple[str, str]) -> Iterator[Bounced]:
    folder = Path(tempfile.mkdtemp(prefix="spean-pgbouncer-"))
    folder.chmod(0o755)
    bouncer = PgBouncer(folder / "pgbouncer", primary.port)
    bouncer.start()
    env = {
        **os.environ,
        "DATABASE_URL": bouncer.url(),
        "SPEAN_DB_POOLER": "transaction",
        "DATABASE_MIGRATE_URL": primary.admin_url,  # a session: migrations and LISTEN
        "REDIS_URL": servers[1],
        "SPEAN_SECRET_KEY": secrets.token_urlsafe(48),
        "SPEAN_DATA_DIR": str(folder / "data"),
        "SPEAN_LOG_LEVEL": "info",  # sign-in codes are read from the log (SPEAN_SMS_SENDER=log)
        "SPEAN_WORKER_IN_API": "false",  # `spean worker` delivers, as in production
        "SPEAN_OTP_PER_IP_PER_HOUR": "100000",
        "SPEAN_SMS_HOURLY_BUDGET": str(10**9),  # shared by every run on this Redis (tests/conftest.py)
    }
    server = Server(env, folder / "server.log")
    worker_log = folder / "worker.log"
    with worker_log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "spean.cli", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        server.start()
        wait_until(lambda: "outbox_listening" in worker_log.read_text(), 30, f"worker: {worker_log.read_text()}")
        yield Bounced(primary, bouncer, server, env, worker_log)
    finally:
        worker.terminate()
        worker.wait(20)
        server.stop()
        bouncer.stop()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class World:
    scene: Scene
    patients: list[uuid.UUID]
    phones: list[str]  # patients' phones, to sign in with
    starts: Iterator[str]


@pytest.fixture(scope="module")
async def world(bounced: Bounced, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Seeded through an in-process app on the same PgBouncer, with the server's secret key."""
    settings = load_settings(
        {},
        env="test",
        database_url=bounced.env["DATABASE_URL"],
        db_pooler="transaction",
        worker_listen=False,
        redis_url=bounced.env["REDIS_URL"],
        data_dir=tmp_path_factory.mktemp("seed"),
        secret_key=bounced.env["SPEAN_SECRET_KEY"],
        auto_migrate=False,
        log_level="warning",
    )
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=2, pooler="transaction")
    try:
        async with AsyncTestClient(create_app(settings)) as client:
            factory = Factory(client, pool, settings)
            scene = await factory.scene()
            await factory.weekly(scene.specialist, start="00:00", end="23:30")
            phones = [new_phone() for _ in range(6)]
            patients = [await factory.patient(scene.post, token=scene.chw.token, phone=phone) for phone in phones]
            # Notifications go out now, whatever the hour the suite runs at.
            await pool.execute(
                "UPDATE facilities SET quiet_start = '00:00', quiet_end = '00:00' WHERE id = ANY($1::uuid[])",
                [scene.centre, scene.post],
            )
    finally:
        await pool.close()
    first = next_local("Asia/Phnom_Penh", "00:00", days_ahead=3)
    starts = (iso(first + timedelta(minutes=30 * i)) for i in itertools.count() if i % 48 != 47)
    return World(scene, patients, phones, starts)


def _cli(bounced: Bounced, *args: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "spean.cli", *args],
        env={**bounced.env, "SPEAN_LOG_LEVEL": "warning", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"spean {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


async def test_the_cli_works_through_pgbouncer(bounced: Bounced) -> None:
    # `demo` migrates first: here through PgBouncer too, which needs no session (every lock a
    # migration takes is transaction-scoped).
    through_bouncer_only = {"DATABASE_MIGRATE_URL": "", "SPEAN_WORKER_LISTEN": "false"}
    assert "Demo network loaded" in _cli(bounced, "demo", **through_bouncer_only)
    token = _cli(bounced, "admin", "issue-token", "--phone", "+85512000301").strip()  # the demo's CHW
    assert "audit chain intact" in _cli(bounced, "admin", "verify-audit")
    async with httpx.AsyncClient(base_url=bounced.server.url, timeout=30) as http:
        me = await http.get("/v1/me", headers=auth(token))
    assert me.status_code == 200, me.text


@dataclass
class Seen:
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    booked: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # record entries
    synced: set[str] = field(default_factory=set)  # record entries a phone's sync received


def _expect(seen: Seen, what: str, response: httpx.Response, *ok: int) -> Any:
    seen.statuses[f"{what} {response.status_code}"] += 1
    if response.status_code not in ok:
        seen.failures.append(f"{what}: {response.status_code} {response.text[:300]}")
        return None
    return response.json() if response.content else None


async def _race(http: httpx.AsyncClient, world: World, seen: Seen) -> None:
    """Every patient books the same slot at once: one wins, the others are told it is taken."""
    start = next(world.starts)
    specialist = str(world.scene.specialist.practitioner_id)

    async def book(patient: uuid.UUID) -> httpx.Response:
        body = {"patient_id": str(patient), "practitioner_id": specialist, "start": start}
        headers = auth(world.scene.chw.token, **{"Idempotency-Key": uuid.uuid4().hex})
        return await http.post("/v1/appointments", json=body, headers=headers)

    answers = await asyncio.gather(*(book(p) for p in world.patients))
    codes = Counter(a.status_code for a in answers)
    if codes != Counter({201: 1, 409: len(world.patients) - 1}):
        seen.failures.append(f"race at {start}: {dict(codes)} {[a.text[:200] for a in answers]}")
    seen.booked += [a.json()["id"] for a in answers if a.status_code == 201]
    seen.statuses.update(f"race {a.status_code}" for a in answers)


async def _writer(http: httpx.AsyncClient, world: World, patient: uuid.UUID, seen: Seen) -> None:
    headers = world.scene.chw.headers
    for _ in range(4):
        created = _expect(
            seen,
            "record write",
            await http.post(f"/v1/patients/{patient}/record", json=BODY_TEMPERATURE, headers=headers),
            201,
        )
        if created is None:
            return
        seen.written.append(created["id"])
        entry = _expect(seen, "entry read", await http.get(f"/v1/record/{created['id']}", headers=headers), 200)
        listed = _expect(seen, "record read", await http.get(f"/v1/patients/{patient}/record", headers=headers), 200)
        if entry is not None and listed is not None and created["id"] not in {e["id"] for e in listed["items"]}:
            seen.failures.append(f"entry {created['id']} written but not listed")


async def _sync(http: httpx.AsyncClient, world: World, writing: asyncio.Future[Any], seen: Seen) -> None:
    """A CHW's phone following the sync feed while records are written: its cursor must never
    pass a change (the feed's horizon, migration 0011, works through a transaction pooler)."""
    cursor = "0"
    while True:
        finished = writing.done()
        answer = await http.get(f"/v1/sync?since={cursor}&limit=50", headers=world.scene.chw.headers)
        page = _expect(seen, "sync", answer, 200)
        if page is None:
            return
        seen.synced.update(change["id"] for change in page["changes"])
        cursor = page["cursor"]
        if finished and not page["more"]:
            return
        if not page["more"]:
            await asyncio.sleep(0.05)


async def _sign_in(http: httpx.AsyncClient, bounced: Bounced, phone: str, seen: Seen) -> None:
    asked = await http.post("/v1/auth/otp", json={"phone": phone})
    _expect(seen, "otp", asked, 202)
    if asked.status_code != 202:
        return
    code = await _code_from_log(bounced, phone)
    tokens = _expect(seen, "token", await http.post("/v1/auth/token", json={"phone": phone, "code": code}), 200)
    if tokens is None:
        return
    _expect(seen, "me", await http.get("/v1/me", headers=auth(tokens["access_token"])), 200)
    refresh = {"refresh_token": tokens["refresh_token"]}
    _expect(seen, "refresh", await http.post("/v1/auth/refresh", json=refresh), 200)


async def _code_from_log(bounced: Bounced, phone: str) -> str:
    """The sign-in code 'sent' (SPEAN_SMS_SENDER=log writes each SMS to the log of the process
    that sent it: the API right after the commit, or `spean worker`'s ledger loop)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for log in (bounced.server.log, bounced.worker_log):
            for line in log.read_text().splitlines():
                if '"sms_logged"' in line and phone in line:
                    found = re.search(r"\b(\d{6})\b", json.loads(line)["body"])
                    if found:
                        return found[1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no sign-in code was sent to {phone}")


async def _named_statements_per_server_connection(bouncer: PgBouncer) -> dict[int, list[str]]:
    """Named prepared statements on each of PgBouncer's server connections: as many clients as
    it has server connections each hold one in an open transaction, and look."""
    clients = [await asyncpg.connect(bouncer.url(), statement_cache_size=0) for _ in range(bouncer.pool_size)]
    try:
        for client in clients:
            await client.execute("BEGIN")
        return {
            await c.fetchval("SELECT pg_backend_pid()"): [
                r["name"] for r in await c.fetch("SELECT name FROM pg_prepared_statements")
            ]
            for c in clients
        }
    finally:
        for client in clients:
            await client.close()


async def test_server_worker_and_sign_ins_through_pgbouncer_under_load(bounced: Bounced, world: World) -> None:
    seen = Seen()
    async with httpx.AsyncClient(base_url=bounced.server.url, timeout=60) as http:
        writing = asyncio.gather(
            *(_race(http, world, seen) for _ in range(3)),
            *(_writer(http, world, patient, seen) for patient in world.patients),
            *(_sign_in(http, bounced, phone, seen) for phone in world.phones),
        )
        await asyncio.gather(writing, _sync(http, world, writing, seen))
    errors = [line[:2000] for line in bounced.server.log.read_text().splitlines() if "unhandled_error" in line]
    print(dict(seen.statuses))
    assert not seen.failures, (seen.failures, errors)
    assert not errors
    assert len(seen.booked) == 3
    assert set(seen.written) <= seen.synced, "the sync feed skipped a change"

    # Every server connection PgBouncer has: none holds a named statement for a client to reuse.
    statements = await _named_statements_per_server_connection(bounced.bouncer)
    assert len(statements) == bounced.bouncer.pool_size, statements
    assert all(names == [] for names in statements.values()), statements

    # The worker, through PgBouncer too, delivered what the bookings announced.
    booked = [uuid.UUID(b) for b in seen.booked]
    conn = await asyncpg.connect(bounced.primary.admin_url)
    try:

        async def delivered() -> bool:
            left = await conn.fetchval(
                """SELECT count(*) FROM notifications WHERE appointment_id = ANY($1::uuid[])
                      AND kind NOT LIKE 'reminder%' AND state NOT IN ('sent', 'cancelled')""",
                booked,
            )
            return bool(left == 0)

        await until(delivered, f"the worker delivers: {bounced.worker_log}")
        sent = await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE appointment_id = ANY($1::uuid[]) AND state = 'sent'", booked
        )
    finally:
        await conn.close()
    assert sent >= len(booked)  # the patient and the specialist of each booking, at least one each


@pytest.fixture
def small_bouncer(primary: OwnPostgres) -> Iterator[PgBouncer]:
    folder = Path(tempfile.mkdtemp(prefix="spean-pgbouncer-"))
    folder.chmod(0o755)
    bouncer = PgBouncer(folder / "pgbouncer", primary.port, pool_size=2)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def _interleaved(bouncer: PgBouncer, **options: Any) -> None:
    """Client A runs a statement, client B holds A's server connection in a transaction, A runs
    the statement again: PgBouncer gives A the other server connection."""
    a = await asyncpg.connect(bouncer.url(), **options)
    b = await asyncpg.connect(bouncer.url(), **options)
    try:
        assert await a.fetchval("SELECT $1::int + 1", 1) == 2
        async with b.transaction():
            await b.fetchval("SELECT 1")
            assert await a.fetchval("SELECT $1::int + 1", 2) == 3
    finally:
        await a.close()
        await b.close()


async def test_plain_asyncpg_fails_through_it_and_spean_settings_do_not(small_bouncer: PgBouncer) -> None:
    with pytest.raises(asyncpg.exceptions.InvalidSQLStatementNameError, match="does not exist"):
        await _interleaved(small_bouncer)  # asyncpg's default: statements prepared under a name
    await _interleaved(small_bouncer, statement_cache_size=0)  # SPEAN_DB_POOLER=transaction


async def test_a_pool_told_postgresql_is_direct_refuses_a_pooler(
    small_bouncer: PgBouncer, primary: OwnPostgres
) -> None:
    with pytest.raises(PoolerMismatch, match="SPEAN_DB_POOLER=transaction"):
        await db.create_pool(small_bouncer.url(), min_size=1, max_size=1)
    direct = await db.create_pool(primary.admin_url, min_size=1, max_size=1)
    await direct.close()
    bounced = await db.create_pool(small_bouncer.url(), min_size=1, max_size=1, pooler="transaction")
    await bounced.close()


async def test_migrations_from_three_places_at_once_through_pgbouncer(
    small_bouncer: PgBouncer, primary: OwnPostgres
) -> None:
    name = f"spean_fresh_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(primary.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        runs = await asyncio.gather(*(migrate(small_bouncer.url(name)) for _ in range(3)))
        applied = sorted(m.version for run in runs for m in run)
        assert applied == [m.version for m in discover()]  # each once, whoever took its lock
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
