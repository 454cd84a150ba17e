"""A small world for the search tests: a health post with its CHW and three patients whose names,
births, identifiers and observations sit on known instants, so each parameter, modifier and
prefix has one right answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from tests.factory import Factory, Staff


@dataclass
class World:
    post: uuid.UUID
    centre: uuid.UUID
    chw: Staff
    specialist: Staff
    a: str  # Nguyễn Thị Phượng, female, born 1979-03-02, with a health ID
    b: str  # Sok Chantha, male, born in 1980 (the year only)
    c: str  # Dara, no birth date
    health_id: str
    obs: dict[str, str]  # o1 weight 2026-01-15T10:00Z, o2 temperature 2026-02-01T00:00Z, o3 weight 2026-03-10T12:30Z
    b_weight: str  # B's weight, 2025-12-31T23:59:59Z
    encounter: str  # A's, 2026-03-10 12:00 to 13:00 UTC; o3 was recorded in it
    hypertension: str  # A's I10, active
    asthma: str  # A's J45.9, resolved


async def _entry(factory: Factory, chw: Staff, patient: str, body: dict[str, Any]) -> str:
    created = await factory.post(f"/v1/patients/{patient}/record", body, chw.token)
    return str(created["id"])


async def build(factory: Factory) -> World:
    centre = await factory.facility()
    post = await factory.facility(kind="health_post")
    await factory.post(
        f"/v1/facilities/{post}/referral-targets", {"facility_id": str(centre)}, await factory.admin_token()
    )
    specialist = await factory.staff(centre)
    await factory.weekly(specialist)
    chw = await factory.staff(post, role="chw")
    health_id = f"HID-{uuid.uuid4().hex[:8]}"
    a = await factory.patient(
        post, token=chw.token, sex="female", birth_date="1979-03-02", birth_year=1979,
        names=[{"text": "Nguyễn Thị Phượng", "family": "Nguyễn", "given": ["Thị", "Phượng"]}],
        identifiers=[{"system": "urn:kh:health-id", "value": health_id}],
    )  # fmt: skip
    b = await factory.patient(
        post, token=chw.token, sex="male", birth_year=1980,
        names=[{"text": "Sok Chantha", "family": "Sok", "given": ["Chantha"]}],
    )  # fmt: skip
    c = await factory.patient(post, token=chw.token, birth_year=None, names=[{"text": "Dara"}])
    pa, pb = str(a), str(b)
    encounter = await _entry(factory, chw, pa, {"kind": "encounter", "started_at": "2026-03-10T12:00:00Z",
                                                "ended_at": "2026-03-10T13:00:00Z", "reason": "check-up"})  # fmt: skip
    obs = {
        "o1": await _entry(factory, chw, pa, {"kind": "observation", "code": "29463-7", "value": 60, "unit": "kg",
                                              "effective_at": "2026-01-15T10:00:00Z"}),
        "o2": await _entry(factory, chw, pa, {"kind": "observation", "code": "8310-5", "value": 37.2, "unit": "Cel",
                                              "effective_at": "2026-02-01T00:00:00Z"}),
        "o3": await _entry(factory, chw, pa, {"kind": "observation", "code": "29463-7", "value": 61, "unit": "kg",
                                              "effective_at": "2026-03-10T12:30:00Z", "encounter_id": encounter}),
    }  # fmt: skip
    b_weight = await _entry(factory, chw, pb, {"kind": "observation", "code": "29463-7", "value": 70, "unit": "kg",
                                               "effective_at": "2025-12-31T23:59:59Z"})  # fmt: skip
    hypertension = await _entry(factory, chw, pa, {"kind": "condition", "code": "I10"})
    asthma = await _entry(factory, chw, pa, {"kind": "condition", "code": "J45.9", "clinical_status": "resolved"})
    return World(post, centre, chw, specialist, pa, pb, str(c), health_id, obs, b_weight, encounter, hypertension,
                 asthma)  # fmt: skip
