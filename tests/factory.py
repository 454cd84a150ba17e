"""Builds test data through the API (as an administrator would) and mints tokens directly."""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from domain.identity import users
from domain.identity.tokens import issue_access_token
from infra.config import Settings

_numbers = itertools.count(random.randrange(1_000_000, 8_000_000))


def new_phone() -> str:
    """A valid, unused Cambodian mobile number (Metfone 097 range)."""
    return f"+85597{next(_numbers):07d}"


def auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


@dataclass(frozen=True)
class Staff:
    user_id: uuid.UUID
    practitioner_id: uuid.UUID
    phone: str
    token: str
    facility_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)


@dataclass(frozen=True)
class PatientLogin:
    patient_id: uuid.UUID
    phone: str
    token: str
    user_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)


@dataclass(frozen=True)
class Consultation:
    """A video consultation starting in five minutes, booked by the post's CHW: its room is open."""

    appointment_id: uuid.UUID
    specialist: Staff
    chw: Staff
    patient: PatientLogin
    centre: uuid.UUID
    post: uuid.UUID


@dataclass(frozen=True)
class Network:
    """A reference centre with one specialist (a specialty of its own, open every day 08:00-12:00
    in 30-minute slots) and a health post that refers to it."""

    centre: uuid.UUID
    post: uuid.UUID
    specialist: Staff
    specialty: str


@dataclass(frozen=True)
class Scene:
    """The usual cast: a reference centre with a specialist open every day 08:00-12:00 in
    30-minute slots, and a health post with a CHW and one of its patients."""

    centre: uuid.UUID
    post: uuid.UUID
    specialist: Staff
    chw: Staff
    patient: uuid.UUID

    def booking(self, at: str = "09:00") -> dict[str, str]:
        return {
            "patient_id": str(self.patient),
            "practitioner_id": str(self.specialist.practitioner_id),
            "start": iso(next_local("Asia/Phnom_Penh", at)),
        }


class Factory:
    def __init__(self, client: AsyncTestClient[Litestar], db: asyncpg.Pool, settings: Settings) -> None:
        self.client = client
        self.db = db
        self.settings = settings
        self._admin: str | None = None

    async def token_for(self, user_id: uuid.UUID, ttl_s: int = 900) -> str:
        async with self.db.acquire() as conn:
            principal = await users.load_principal(conn, user_id)
        return issue_access_token(principal, self.client.app.state.secret_key, ttl_s)

    async def admin_token(self) -> str:
        if self._admin is None:
            async with self.db.acquire() as conn:
                user_id = await users.ensure_user(conn, new_phone(), display_name="root", system_admin=True)
            # Kept for the whole session: on a loaded machine the suite outlives a 15-minute token.
            self._admin = await self.token_for(user_id, ttl_s=86_400)
        return self._admin

    async def post(self, path: str, body: Any, token: str, expect: int = 201) -> Any:
        response = await self.client.post(path, json=body, headers=auth(token))
        assert response.status_code == expect, response.text
        return response.json()

    async def facility(
        self, kind: str = "reference_centre", timezone: str = "Asia/Phnom_Penh", country: str = "KH"
    ) -> uuid.UUID:
        body = {"name": f"Facility {uuid.uuid4().hex[:6]}", "kind": kind, "timezone": timezone, "country": country}
        return uuid.UUID((await self.post("/v1/facilities", body, await self.admin_token()))["id"])

    async def staff(
        self,
        facility_id: uuid.UUID,
        role: str = "specialist",
        specialties: list[str] | None = None,
        languages: list[str] | None = None,
    ) -> Staff:
        phone = new_phone()
        body = {
            "name": f"Dr {uuid.uuid4().hex[:6]}",
            "phone": phone,
            "facility_id": str(facility_id),
            "role": role,
            "specialties": specialties or (["cardiology"] if role == "specialist" else []),
            "languages": languages or ["km", "en"],
        }
        created = await self.post("/v1/practitioners", body, await self.admin_token())
        user_id = uuid.UUID(created["user_id"])
        return Staff(user_id, uuid.UUID(created["id"]), phone, await self.token_for(user_id), facility_id)

    async def facility_admin(self, facility_id: uuid.UUID) -> str:
        async with self.db.acquire() as conn:
            user_id = await users.ensure_user(conn, new_phone())
            await users.grant_role(conn, user_id, facility_id, "facility_admin")
        return await self.token_for(user_id)

    async def patient(
        self, facility_id: uuid.UUID, *, phone: str | None = None, token: str | None = None, **fields: Any
    ) -> uuid.UUID:
        body = {
            "names": [{"text": f"Patient {uuid.uuid4().hex[:6]}"}],
            "home_facility_id": str(facility_id),
            "birth_year": 1980,
            **fields,
        }
        if phone:
            body["phone"] = phone
        created = await self.post("/v1/patients", body, token or await self.admin_token())
        return uuid.UUID(created["id"])

    async def consultation_soon(self, scene: Scene) -> tuple[PatientLogin, uuid.UUID]:
        """A patient of the scene's post who can sign in, and their consultation with its
        specialist starting in five minutes, booked by the CHW: its room is open."""
        patient = await self.patient_login(scene.post)
        booked = await self.post(
            "/v1/appointments", {**scene.booking("10:00"), "patient_id": str(patient.patient_id)}, scene.chw.token
        )
        appointment_id = uuid.UUID(booked["id"])
        await move(self.db, appointment_id, start_in_min=5)
        return patient, appointment_id

    async def consultation(self) -> Consultation:
        """A scene's consultation starting in five minutes (consultation_soon), with its cast."""
        scene = await self.scene()
        patient, appointment_id = await self.consultation_soon(scene)
        return Consultation(appointment_id, scene.specialist, scene.chw, patient, scene.centre, scene.post)

    async def patient_login(self, facility_id: uuid.UUID) -> PatientLogin:
        """A patient registered with a phone, and that phone signed in."""
        phone = new_phone()
        patient_id = await self.patient(facility_id, phone=phone)
        async with self.db.acquire() as conn:
            user_id = await users.login(conn, phone)
        assert user_id is not None  # a registered patient's phone may sign in
        return PatientLogin(patient_id, phone, await self.token_for(user_id), user_id)

    async def post_with_patient(self) -> tuple[uuid.UUID, Staff, uuid.UUID]:
        """(a health post, its CHW, a patient of the post with a phone number of their own)."""
        post = await self.facility(kind="health_post")
        chw = await self.staff(post, role="chw")
        return post, chw, await self.patient(post, token=chw.token, phone=new_phone())

    async def scene(self) -> Scene:
        centre = await self.facility()
        post = await self.facility(kind="health_post")
        specialist = await self.staff(centre, specialties=["cardiology"])
        await self.weekly(specialist)
        chw = await self.staff(post, role="chw")
        return Scene(centre, post, specialist, chw, await self.patient(post, token=chw.token))

    async def network(self, specialty_prefix: str) -> Network:
        """What a patient of the post needs to book at its reference centre (USSD, SMS, /dev/phone)."""
        centre = await self.facility()
        post = await self.facility(kind="health_post")
        admin = await self.admin_token()
        await self.post(f"/v1/facilities/{post}/referral-targets", {"facility_id": str(centre)}, admin)
        specialty = f"{specialty_prefix}{uuid.uuid4().hex[:4]}"
        specialist = await self.staff(centre, specialties=[specialty])
        await self.weekly(specialist)
        return Network(centre, post, specialist, specialty)

    async def weekly(
        self,
        staff: Staff,
        facility_id: uuid.UUID | None = None,
        *,
        start: str = "08:00",
        end: str = "12:00",
        slot_minutes: int = 30,
        days: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7),
        modes: tuple[str, ...] = ("video", "audio"),
    ) -> None:
        rules = [
            {"weekday": d, "start": start, "end": end, "slot_minutes": slot_minutes, "modes": list(modes)} for d in days
        ]
        body = {"facility_id": str(facility_id or staff.facility_id), "rules": rules}
        response = await self.client.put(
            f"/v1/practitioners/{staff.practitioner_id}/availability", json=body, headers=staff.headers
        )
        assert response.status_code == 200, response.text


def next_local(timezone: str, at: str, days_ahead: int = 2) -> datetime:
    """A future wall-clock time in `timezone`, as an aware UTC datetime."""
    hour, minute = (int(x) for x in at.split(":"))
    day = datetime.now(UTC).astimezone(ZoneInfo(timezone)).date() + timedelta(days=days_ahead)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def local_date(instant: datetime, timezone: str) -> date:
    return instant.astimezone(ZoneInfo(timezone)).date()


async def move(db: asyncpg.Pool, appointment_id: uuid.UUID, *, start_in_min: int, minutes: int = 30) -> None:
    """Put an appointment `start_in_min` minutes from now (negative: in the past), `minutes` long."""
    await db.execute(
        "UPDATE appointments SET start_at = now() + make_interval(mins => $2), "
        "end_at = now() + make_interval(mins => $2 + $3) WHERE id = $1",
        appointment_id,
        start_in_min,
        minutes,
    )
