"""The practitioner's day: GET /v1/me/consultation-queue (the specialist's workspace draws its
queue from it). Here, not in api/, because it joins the booking (PostgreSQL) with who is in each
consultation's video room now (Redis, realtime.rooms)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from litestar import Request, get
from litestar.params import FromQuery

from api.deps import Caller, Conn
from domain.booking.day_queue import DayQueue, Presence, RoomPresence, day_queue
from realtime.rooms import Rooms

_CALLERS = ("specialist", "guest")  # not the patient's side


def presence_in(rooms: Rooms) -> Presence:
    async def presence(appointment_ids: list[uuid.UUID]) -> dict[uuid.UUID, RoomPresence]:
        found: dict[uuid.UUID, RoomPresence] = {}
        for room, peers in (await rooms.peers_of([str(i) for i in appointment_ids])).items():
            here = [p for p in peers.values() if p.side not in _CALLERS and p.connected]
            if not here:
                continue
            admitted = [p for p in here if p.state == "admitted"]
            first = min((p.since for p in (admitted or here) if p.since), default=None)
            found[uuid.UUID(room)] = RoomPresence(
                state="admitted" if admitted else "waiting",
                since=dt.datetime.fromtimestamp(first, dt.UTC) if first else None,
            )
        return found

    return presence


@get(
    "/v1/me/consultation-queue",
    tags=["booking"],
    summary="My consultations of one day (default today, in each facility's zone): waiting, late, next",
)
async def consultation_queue(
    request: Request[Any, Any, Any], conn: Conn, principal: Caller, date: FromQuery[dt.date | None] = None
) -> DayQueue:
    return await day_queue(conn, principal, date, presence_in(request.app.state.rtc_rooms))
