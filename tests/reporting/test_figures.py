"""Figures of a factory-built month, each facility's period read in its own time zone."""

from __future__ import annotations

import asyncpg
import pytest

from domain.reporting import figures, periods
from tests.factory import Factory
from tests.reporting.month import Month, build


@pytest.fixture(scope="module")
async def month(factory: Factory, db: asyncpg.Pool) -> Month:
    return await build(factory, db, 2026, 11)


async def _figures(db: asyncpg.Pool, month: Month, period: str) -> dict[str, figures.FacilityFigures]:
    async with db.acquire() as conn:
        computed = await figures.compute(conn, periods.parse(period), month.facilities)
    by_id = {item.facility_id: item for item in computed}
    return {"centre": by_id[month.centre], "post": by_id[month.post], "lima": by_id[month.lima]}


async def test_consultations_no_shows_and_waits_of_the_month(db: asyncpg.Pool, month: Month) -> None:
    got = await _figures(db, month, "202611")
    centre, lima = got["centre"], got["lima"]
    # Cancelled and still-booked appointments are not consultations; 00:30 on 1 December in Phnom
    # Penh (still 30 November in UTC) is December's.
    assert centre.consultations_by_mode == {"video": 2, "audio": 1}
    assert centre.consultations_by_specialty == {"cardiology": 2, "neurology": 1}
    assert centre.no_shows == 1
    assert centre.median_wait_days == 4.0
    # 23:30 on 30 November in Lima is 1 December in UTC: November's; 23:30 on 31 October is not.
    assert lima.consultations_by_mode == {"audio": 1}
    assert lima.consultations_by_specialty == {"general": 1}
    assert lima.no_shows == 1
    assert lima.median_wait_days == 1.0
    assert (centre.referrals_sent, lima.referrals_sent) == (0, 0)


async def test_referrals_sent_answered_completed_at_the_referring_facility(db: asyncpg.Pool, month: Month) -> None:
    post = (await _figures(db, month, "202611"))["post"]
    assert (post.referrals_sent, post.referrals_answered, post.referrals_completed) == (6, 5, 3)
    assert post.median_referral_wait_days == 13.0
    assert post.consultations == 0
    assert post.median_wait_days is None


async def test_the_neighbouring_months_take_the_edge_consultations(db: asyncpg.Pool, month: Month) -> None:
    october, december = await _figures(db, month, "202610"), await _figures(db, month, "202612")
    assert october["lima"].consultations_by_mode == {"video": 1}
    assert october["centre"].consultations == 0
    assert december["centre"].consultations_by_mode == {"video": 1}
    assert december["lima"].consultations == 0
    # Referred in October, answered in November: October counts it sent, nothing more.
    assert (october["post"].referrals_sent, october["post"].referrals_answered) == (1, 0)


async def test_days_and_iso_weeks(db: asyncpg.Pool, month: Month) -> None:
    day = await _figures(db, month, "20261130")
    assert day["centre"].consultations_by_mode == {"audio": 1}
    assert day["lima"].consultations_by_mode == {"audio": 1}
    week = await _figures(db, month, "2026W49")  # Monday 30 November to Sunday 6 December
    assert week["centre"].consultations_by_mode == {"audio": 1, "video": 1}
    assert week["lima"].consultations_by_mode == {"audio": 1}
