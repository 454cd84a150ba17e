"""The notification tests' cast: the local FCM server, and real `spean worker` processes pointed
at it through firebase-admin (the real SDK), on the suite's database."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from domain.identity import users
from infra.config import Settings
from tests.factory import Factory, PatientLogin, Scene, auth, iso, new_phone, next_local
from tests.fcm_server import FcmServer

Worker = subprocess.Popen[bytes]


@pytest.fixture
def fcm() -> Iterator[FcmServer]:
    server = FcmServer().start()
    yield server
    server.stop()


@pytest.fixture
def start_worker(fcm: FcmServer, settings: Settings) -> Iterator[Callable[..., tuple[Worker, Path]]]:
    folder = Path(tempfile.mkdtemp(prefix="spean-worker-"))
    credentials = fcm.service_account(folder)
    started: list[Worker] = []

    def start(**extra: str) -> tuple[Worker, Path]:
        log = folder / f"worker-{len(started)}.log"
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "SPEAN_DATA_DIR": str(folder),
            "SPEAN_SECRET_KEY": settings.secret_key,
            "SPEAN_ENV": "test",
            "SPEAN_AUTO_MIGRATE": "false",
            "SPEAN_LOG_LEVEL": "info",
            "SPEAN_PUSH_SENDER": "fcm",
            "GOOGLE_APPLICATION_CREDENTIALS": str(credentials),
            "FCM_API_BASE_URL": fcm.base_url,
            "SPEAN_WORKER_POLL_MS": "50",
            "SPEAN_NOTIFY_BACKOFF_MS": "20",
            "SPEAN_SMS_HOURLY_BUDGET": str(10**9),  # shared by every run on this Redis (tests/conftest.py)
            **extra,
        }
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "spean.cli", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        started.append(proc)
        return proc, log

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    shutil.rmtree(folder, ignore_errors=True)


async def wait_for(check: Callable[[], Any], timeout_s: float = 30, what: str = "") -> Any:
    """Poll an (async) check until it returns something truthy."""
    import asyncio
    import inspect

    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.05)


async def awake_scene(factory: Factory) -> Scene:
    """The usual cast, its facilities without quiet hours: what a test sees must not depend on the
    hour it runs at (the quiet hours tests set their own)."""
    cast = await factory.scene()
    await quiet_hours(factory.db, "00:00", "00:00", cast.centre, cast.post)
    return cast


async def quiet_hours(db: asyncpg.Pool, start: str, end: str, *facilities: uuid.UUID) -> None:
    await db.execute(
        "UPDATE facilities SET quiet_start = $1::text::time, quiet_end = $2::text::time WHERE id = ANY($3::uuid[])",
        start,
        end,
        list(facilities),
    )


async def app_patient(factory: Factory, facility_id: uuid.UUID, *, phone: bool = True) -> PatientLogin:
    """A patient who prefers the app, with a login (a phone-less one gets a login all the same)."""
    number = new_phone()
    patient_id = await factory.patient(
        facility_id, phone=number if phone else None, preferred_channel="app", preferred_language="fr"
    )
    async with factory.db.acquire() as conn:
        if phone:
            login = await users.login(conn, number)
            assert login is not None
            user_id = login
        else:
            user_id = await users.ensure_user(conn, number)
            await conn.execute(
                "INSERT INTO patient_accounts (user_id, patient_id) VALUES ($1, $2)", user_id, patient_id
            )
    return PatientLogin(patient_id, number, await factory.token_for(user_id), user_id)


async def register(factory: Factory, token: str, fcm_token: str, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = await factory.post(
        "/v1/me/devices", {"token": fcm_token, "platform": "android", **extra}, token
    )
    return result


async def book(factory: Factory, scene: Scene, patient_id: uuid.UUID, at: str, days_ahead: int = 2) -> str:
    body = {
        "patient_id": str(patient_id),
        "practitioner_id": str(scene.specialist.practitioner_id),
        "start": iso(next_local("Asia/Phnom_Penh", at, days_ahead)),
    }
    response = await factory.client.post("/v1/appointments", json=body, headers=auth(scene.chw.token))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def states(db: asyncpg.Pool, appointment_id: str) -> list[tuple[str, str, str]]:
    rows = await db.fetch(
        "SELECT kind, channel, state FROM notifications WHERE appointment_id = $1 ORDER BY kind, channel, state",
        uuid.UUID(appointment_id),
    )
    return [(r["kind"], r["channel"], r["state"]) for r in rows]
