"""`make run` delivers out of the box: in development the API process runs the worker, with the
log senders when no credentials are set."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec
from litestar.testing import AsyncTestClient

from infra.config import Settings
from sms.sender import LogSmsSender
from spean.app import create_app
from tests.factory import Factory, auth, iso, new_phone, next_local
from tests.notifications.conftest import awake_scene, register, wait_for


async def test_the_api_process_delivers_in_development(
    factory: Factory, db: asyncpg.Pool, settings: Settings, unique: str
) -> None:
    scene = await awake_scene(factory)
    phone = new_phone()
    patient = await factory.patient(scene.post, phone=phone, preferred_language="vi")  # prefers SMS
    await register(factory, scene.specialist.token, f"dev-{unique}")
    sms = LogSmsSender()
    dev = msgspec.structs.replace(settings, worker_in_api=None, env="development", worker_poll_ms=50)
    assert dev.runs_worker_in_api
    assert dev.push_via == "log"
    async with AsyncTestClient(create_app(dev, sms_sender=sms)) as client:
        body = {
            "patient_id": str(patient),
            "practitioner_id": str(scene.specialist.practitioner_id),
            "start": iso(next_local("Asia/Phnom_Penh", "11:30", 6)),
        }
        booked = await client.post("/v1/appointments", json=body, headers=auth(scene.chw.token))
        assert booked.status_code == 201, booked.text
        appointment = uuid.UUID(booked.json()["id"])

        async def delivered() -> bool:
            rows = await db.fetch(
                "SELECT channel, state FROM notifications WHERE appointment_id = $1 AND kind = 'appointment_booked'",
                appointment,
            )
            return sorted((r["channel"], r["state"]) for r in rows) == [("push", "sent"), ("sms", "sent")]

        await wait_for(delivered, what="the booking's messages, from the API process")
    texts = [text for to, text in sms.sent if to == phone]
    assert len(texts) == 1
    assert texts[0].startswith("Buổi khám của bạn đã được đặt vào")  # her language, no health detail
