"""The practitioner's day: GET /v1/me/consultation-queue (the specialist's workspace draws its
queue from it)."""

from __future__ import annotations

import datetime as dt

from litestar import get
from litestar.params import FromQuery

from api.deps import Caller, Conn
from domain.booking.day_queue import DayQueue, day_queue


@get(
    "/v1/me/consultation-queue",
    tags=["booking"],
    summary="My consultations of one day (default today, in each facility's zone): waiting, late, next",
)
async def consultation_queue(conn: Conn, principal: Caller, date: FromQuery[dt.date | None] = None) -> DayQueue:
    return await day_queue(conn, principal, date)
