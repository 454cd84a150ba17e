"""A reference centre open every day and a health post that refers to it: what a patient needs to
book by USSD from /dev/phone."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from tests.factory import Factory, Staff


@dataclass(frozen=True)
class Network:
    centre: uuid.UUID
    post: uuid.UUID
    specialist: Staff
    specialty: str


@pytest.fixture
async def network(factory: Factory) -> Network:
    centre = await factory.facility()
    post = await factory.facility(kind="health_post")
    admin = await factory.admin_token()
    await factory.post(f"/v1/facilities/{post}/referral-targets", {"facility_id": str(centre)}, admin)
    specialty = f"derm{uuid.uuid4().hex[:4]}"
    specialist = await factory.staff(centre, specialties=[specialty])
    await factory.weekly(specialist)
    return Network(centre, post, specialist, specialty)
