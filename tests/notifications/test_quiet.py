"""Quiet hours: the rule (notifications.quiet), the facility admin setting them, and a real
`spean worker` holding a reminder through them while a call goes at once."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from domain.booking import consultation
from domain.identity import users
from notifications.quiet import QuietHours, hold
from tests.factory import Factory, next_local
from tests.fcm_server import FcmServer
from tests.notifications.conftest import Worker, app_patient, awake_scene, book, quiet_hours, register, wait_for

StartWorker = Callable[..., tuple[Worker, Path]]
PP = "Asia/Phnom_Penh"  # UTC+7, no daylight saving


def _at(local: str, day: int = 10) -> dt.datetime:
    hour, minute = (int(x) for x in local.split(":"))
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=ZoneInfo(PP)).astimezone(dt.UTC)


class TestRule:
    night = QuietHours(timezone=PP, start=dt.time(21), end=dt.time(7))

    @pytest.mark.parametrize(
        ("due", "released"),
        [
            (_at("20:59"), _at("20:59")),  # before: at once
            (_at("21:00"), _at("07:00", 11)),  # the evening part: the next morning
            (_at("23:30"), _at("07:00", 11)),
            (_at("03:00"), _at("07:00")),  # after midnight: the same morning
            (_at("07:00"), _at("07:00")),  # the end is not quiet
            (_at("12:00"), _at("12:00")),
        ],
    )
    def test_across_midnight(self, due: dt.datetime, released: dt.datetime) -> None:
        assert self.night.release(due) == released

    def test_within_a_day_and_none(self) -> None:
        siesta = QuietHours(timezone=PP, start=dt.time(12), end=dt.time(14))
        assert siesta.release(_at("13:00")) == _at("14:00")
        assert siesta.release(_at("14:30")) == _at("14:30")
        assert siesta.release(_at("11:59")) == _at("11:59")
        never = QuietHours(timezone=PP, start=dt.time(0), end=dt.time(0))
        assert never.release(_at("03:00")) == _at("03:00")

    def test_in_the_facilitys_zone(self) -> None:
        paris = QuietHours(timezone="Europe/Paris", start=dt.time(21), end=dt.time(7))
        due = dt.datetime(2026, 12, 10, 21, 30, tzinfo=dt.UTC)  # 22:30 in Paris, 04:30 in Phnom Penh
        assert paris.release(due) == dt.datetime(2026, 12, 11, 6, 0, tzinfo=dt.UTC)  # 07:00 in Paris

    def test_urgent_goes_and_a_consultation_inside_quiet_hours_is_not_waited_for(self) -> None:
        due = _at("23:00")
        assert hold(self.night, due, urgent=True, consultation_start=None) == due
        assert hold(self.night, due, urgent=False, consultation_start=None) == _at("07:00", 11)
        # the 1 h reminder of a 06:30 consultation: the patient has to be up anyway
        early = _at("05:30", 11)
        assert hold(self.night, early, urgent=False, consultation_start=_at("06:30", 11)) == early
        # a notice about a consultation later that day is held to the morning
        assert hold(self.night, due, urgent=False, consultation_start=_at("09:00", 11)) == _at("07:00", 11)


class TestSetting:
    async def test_the_facility_admin_sets_quiet_hours(self, factory: Factory) -> None:
        facility = await factory.facility()
        admin = {"Authorization": f"Bearer {await factory.facility_admin(facility)}"}
        path = f"/v1/facilities/{facility}"
        shown = (await factory.client.get(path, headers=admin)).json()
        assert (shown["quiet_start"], shown["quiet_end"]) == ("21:00", "07:00")  # the default
        changed = await factory.client.patch(path, json={"quiet_start": "22:30", "quiet_end": "06:00"}, headers=admin)
        assert changed.status_code == 200, changed.text
        assert (changed.json()["quiet_start"], changed.json()["quiet_end"]) == ("22:30", "06:00")
        for bad in ({"quiet_start": "25:00"}, {"quiet_end": "7h"}, {"quiet_start": "21:00+07:00"}):
            refused = await factory.client.patch(path, json=bad, headers=admin)
            assert refused.status_code == 422, refused.text
            assert refused.json()["code"] == "invalid_time"
        other = await factory.staff(facility, role="chw")
        assert (await factory.client.patch(path, json={"quiet_end": "08:00"}, headers=other.headers)).status_code == 403


class TestWorker:
    async def test_quiet_hours_hold_a_reminder_and_not_a_call(
        self, factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
    ) -> None:
        scene = await awake_scene(factory)
        patient = await app_patient(factory, scene.post)
        await register(factory, patient.token, f"quiet-{unique}")
        start_worker()
        zone = ZoneInfo(PP)

        # A reminder due inside the patient's health post's quiet hours waits for their end.
        start = next_local(PP, "09:00", 3)
        due = (start - dt.timedelta(days=1)).astimezone(zone)
        await quiet_hours(db, _hhmm(due - dt.timedelta(minutes=30)), _hhmm(due + dt.timedelta(minutes=30)), scene.post)
        first = await book(factory, scene, patient.patient_id, "09:00", days_ahead=3)
        reminder = await wait_for(
            lambda: db.fetchval(
                "SELECT available_at FROM notifications WHERE appointment_id = $1 AND kind = 'reminder_1440m'",
                uuid.UUID(first),
            ),
            what="the reminder planned",
        )
        assert reminder == due + dt.timedelta(minutes=30)

        # Quiet hours now: the next booking's notice waits for the morning, the call goes at once.
        now = dt.datetime.now(zone)
        await quiet_hours(db, _hhmm(now - dt.timedelta(hours=1)), _hhmm(now + dt.timedelta(hours=1)), scene.post)
        second = await book(factory, scene, patient.patient_id, "10:00", days_ahead=2)
        async with db.acquire() as conn, conn.transaction():
            specialist = await users.load_principal(conn, scene.specialist.user_id)
            await consultation.start_call(conn, specialist, uuid.UUID(second))

        calls = await wait_for(
            lambda: [m for m in fcm.to(f"quiet-{unique}") if m["data"]["kind"] == "call_ready"], what="the call"
        )
        assert len(calls) == 1
        assert calls[0]["android"]["priority"] == "high"
        held = await db.fetchrow(
            "SELECT state, available_at FROM notifications WHERE appointment_id = $1 AND kind = 'appointment_booked' "
            "AND patient_id IS NOT NULL",
            uuid.UUID(second),
        )
        assert held is not None
        ends = dt.datetime.combine(now.date(), dt.time.fromisoformat(_hhmm(now + dt.timedelta(hours=1))), zone)
        if ends <= now:
            ends += dt.timedelta(days=1)
        assert (held["state"], held["available_at"]) == ("pending", ends)
        booked = [m for m in fcm.to(f"quiet-{unique}") if m["data"].get("appointment_id") == second]
        assert [m["data"]["kind"] for m in booked] == ["call_ready"]


def _hhmm(local: dt.datetime) -> str:
    return local.strftime("%H:%M")
