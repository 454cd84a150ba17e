"""A read replica (DATABASE_REPLICA_URL) made by PostgreSQL's own streaming replication: a hot
standby the test clones from its primary with pg_basebackup -R.

Replay on the standby is paused to make it visibly stale: a stale-tolerant read (free slots, a
FHIR search) by someone else still shows the old state, so it came from the replica, while the
health worker who just booked sees their booking (read-your-writes, from the primary). The lag is
in /metrics; a replica further behind than SPEAN_DB_REPLICA_MAX_LAG, or stopped, serves nothing
and the primary answers instead. A replica-served read's audit event is on the primary.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from api.reads import check_table
from infra import db
from infra.config import load_settings
from spean.app import create_app
from tests.factory import Factory, Scene, Staff, iso, local_date, next_local
from tests.fault.servers import OwnPostgres
from tests.scale.servers import Standby, until

TZ = "Asia/Phnom_Penh"
BODY_TEMPERATURE = {"kind": "observation", "code": "8310-5", "value": 37.2, "unit": "Cel"}


@pytest.fixture(scope="module")
def standby(primary: OwnPostgres) -> Iterator[Standby]:
    folder = Path(tempfile.mkdtemp(prefix="spean-replica-"))
    folder.chmod(0o755)
    server = Standby(folder / "standby")
    server.clone(primary)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Deployment:
    client: AsyncTestClient[Litestar]
    factory: Factory


@pytest.fixture(scope="module")
def secret_key() -> str:
    return secrets.token_urlsafe(48)


@contextlib.asynccontextmanager
async def deployment(
    primary: OwnPostgres, standby: Standby, redis_url: str, secret_key: str, *, max_lag_s: float
) -> AsyncIterator[Deployment]:
    """The app on the primary, with the standby as its replica."""
    with tempfile.TemporaryDirectory(prefix="spean-replica-app-") as data_dir:
        settings = load_settings(
            {},
            env="test",
            database_url=primary.admin_url,
            database_replica_url=standby.admin_url,
            db_replica_max_lag_s=max_lag_s,
            redis_url=redis_url,
            data_dir=Path(data_dir),
            secret_key=secret_key,
            auto_migrate=False,
            log_level="warning",
        )
        pool = await db.create_pool(primary.admin_url, min_size=1, max_size=2)
        try:
            async with AsyncTestClient(create_app(settings)) as client:
                yield Deployment(client, Factory(client, pool, settings))
        finally:
            await pool.close()


async def metrics(client: AsyncTestClient[Litestar]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = (await client.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("spean_db_replica")
    }


def served(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], by: str, reason: str) -> float:
    return found.get(("spean_db_replica_reads_total", (("reason", reason), ("served_by", by))), 0.0)


def gauge(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return found[(name, ())]


@dataclass
class Cast:
    scene: Scene
    reader: Staff  # a CHW of the post who writes nothing: always served by the replica if it may
    start: str  # a free slot of the specialist

    def slot_query(self) -> str:
        day = local_date(next_local(TZ, "00:00", days_ahead=3), TZ)
        practitioner = self.scene.specialist.practitioner_id
        return f"/v1/slots?from={day}&to={day + timedelta(days=1)}&practitioner_id={practitioner}&limit=100"


async def free(client: AsyncTestClient[Litestar], cast: Cast, staff: Staff) -> bool:
    """Whether `staff` is shown the cast's slot as free."""
    answer = await client.get(cast.slot_query(), headers=staff.headers)
    assert answer.status_code == 200, answer.text
    return cast.start in {s["start"] for s in answer.json()["items"]}


async def cast_on(deployment: Deployment) -> Cast:
    factory = deployment.factory
    scene = await factory.scene()
    await factory.weekly(scene.specialist, start="00:00", end="23:30")
    reader = await factory.staff(scene.post, role="chw")
    start = iso(next_local(TZ, "10:00", days_ahead=3))
    cast = Cast(scene, reader, start)
    # The replica has replayed the seeding once the reader sees the slot.
    await until(lambda: free(deployment.client, cast, reader), "the replica shows the new schedule")
    return cast


@contextlib.asynccontextmanager
async def replay_paused(standby: Standby) -> AsyncIterator[None]:
    conn = await asyncpg.connect(standby.admin_url)
    try:
        await conn.execute("SELECT pg_wal_replay_pause()")
        yield
    finally:
        await conn.execute("SELECT pg_wal_replay_resume()")
        await conn.close()


async def book(client: AsyncTestClient[Litestar], cast: Cast) -> str:
    booking = {**cast.scene.booking(), "start": cast.start}
    answer = await client.post("/v1/appointments", json=booking, headers=cast.scene.chw.headers)
    assert answer.status_code == 201, answer.text
    appointment: str = answer.json()["id"]
    return appointment


async def test_reads_go_to_the_replica_and_a_write_is_read_back_from_the_primary(
    primary: OwnPostgres, standby: Standby, servers: tuple[str, str], secret_key: str
) -> None:
    async with deployment(primary, standby, servers[1], secret_key, max_lag_s=600) as app:
        assert check_table(app.client.app.routes) == []  # every route the table names exists
        cast = await cast_on(app)
        chw, reader = cast.scene.chw, cast.reader
        before = await metrics(app.client)
        async with replay_paused(standby):
            appointment = await book(app.client, cast)
            # The health worker who booked reads it back, from the primary...
            read_back = await app.client.get(f"/v1/appointments/{appointment}", headers=chw.headers)
            assert read_back.status_code == 200, read_back.text
            assert not await free(app.client, cast, chw)
            # ...while someone else's search is answered by the paused replica: still free there.
            assert await free(app.client, cast, reader)
            await until(lambda: _lag_above(app.client, 0), "/metrics shows the replica behind", within_s=10)
            after = await metrics(app.client)
            assert served(after, "replica", "fresh") > served(before, "replica", "fresh")
            assert served(after, "primary", "own_write") > served(before, "primary", "own_write")
            assert gauge(after, "spean_db_replica_up") == 1
        await until(lambda: _not(free(app.client, cast, reader)), "the replica replays the booking")


async def test_a_replica_served_search_is_audited_on_the_primary(
    primary: OwnPostgres, standby: Standby, servers: tuple[str, str], secret_key: str
) -> None:
    async with deployment(primary, standby, servers[1], secret_key, max_lag_s=600) as app:
        cast = await cast_on(app)
        patient = cast.scene.patient
        written = await app.client.post(
            f"/v1/patients/{patient}/record", json=BODY_TEMPERATURE, headers=cast.scene.chw.headers
        )
        assert written.status_code == 201, written.text
        search = f"/fhir/Observation?patient={patient}"

        async def replica_has_it() -> bool:
            answer = await app.client.get(search, headers=cast.reader.headers)
            assert answer.status_code == 200, answer.text
            return bool(answer.json().get("entry"))

        before = served(await metrics(app.client), "replica", "fresh")
        await until(replica_has_it, "the reader finds the observation")
        assert served(await metrics(app.client), "replica", "fresh") > before
        audited = await app.factory.db.fetchval(
            """SELECT count(*) FROM audit_events
               WHERE actor_user_id = $1 AND patient_id = $2 AND action = 'search' AND outcome = 'success'""",
            cast.reader.user_id,
            patient,
        )
        assert audited >= 1


async def test_a_lagging_replica_falls_back_to_the_primary(
    primary: OwnPostgres, standby: Standby, servers: tuple[str, str], secret_key: str
) -> None:
    async with deployment(primary, standby, servers[1], secret_key, max_lag_s=1) as app:
        cast = await cast_on(app)
        async with replay_paused(standby):
            await book(app.client, cast)
            await until(lambda: _lag_above(app.client, 1), "the replica is further behind than the bound")
            before = served(await metrics(app.client), "primary", "lagging")
            assert not await free(app.client, cast, cast.reader)  # the primary's answer
            assert served(await metrics(app.client), "primary", "lagging") > before
        await until(lambda: _not(_lag_above(app.client, 0.9)), "the replica catches up")
        before = served(await metrics(app.client), "replica", "fresh")
        assert not await free(app.client, cast, cast.reader)
        assert served(await metrics(app.client), "replica", "fresh") > before


async def test_a_stopped_replica_falls_back_to_the_primary(
    primary: OwnPostgres, standby: Standby, servers: tuple[str, str], secret_key: str
) -> None:
    async with deployment(primary, standby, servers[1], secret_key, max_lag_s=600) as app:
        cast = await cast_on(app)
        standby.stop()
        try:
            await book(app.client, cast)
            # The first read may meet the replica's pooled connection dead: it runs again on the primary.
            assert not await free(app.client, cast, cast.reader)
            await until(lambda: _gauge_is(app.client, "spean_db_replica_up", 0), "/metrics shows the replica down")
            before = served(await metrics(app.client), "primary", "down")
            assert not await free(app.client, cast, cast.reader)
            assert served(await metrics(app.client), "primary", "down") > before
        finally:
            standby.start()
        await until(lambda: _gauge_is(app.client, "spean_db_replica_up", 1), "the replica is back")
        before = served(await metrics(app.client), "replica", "fresh")
        assert not await free(app.client, cast, cast.reader)
        assert served(await metrics(app.client), "replica", "fresh") > before


async def _lag_above(client: AsyncTestClient[Litestar], seconds: float) -> bool:
    return gauge(await metrics(client), "spean_db_replica_lag_seconds") > seconds


async def _gauge_is(client: AsyncTestClient[Litestar], name: str, value: float) -> bool:
    return gauge(await metrics(client), name) == value


async def _not(check: Awaitable[bool]) -> bool:
    return not await check
