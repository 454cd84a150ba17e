"""Free consultation slots, shown in the facility's time zone and in UTC."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from litestar import Controller, get
from litestar.params import FromQuery, QueryParameter

from api.deps import Caller, Conn
from api.schemas import SlotOut, SlotPage
from api.transaction import ONE_READ
from domain.booking import availability


class SlotController(Controller):
    path = "/v1/slots"
    tags = ["booking"]

    @get("/", opt=ONE_READ, summary="Free slots in a date range (facility-local dates)")
    async def search(
        self,
        conn: Conn,
        principal: Caller,
        from_: Annotated[date, QueryParameter(name="from")],
        to: FromQuery[date],
        specialty: FromQuery[str | None] = None,
        facility_id: FromQuery[uuid.UUID | None] = None,
        practitioner_id: FromQuery[uuid.UUID | None] = None,
        mode: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=2000)] = 500,
    ) -> SlotPage:
        slots = await availability.list_free_slots(
            conn,
            first_day=from_,
            last_day=to,
            specialty=specialty,
            facility_id=facility_id,
            practitioner_id=practitioner_id,
            mode=mode,
            limit=limit,
        )
        # Back-to-back slots share instants (one's end is the next one's start): each instant is
        # written in its zone once (a time zone conversion and its text are most of a slot's cost).
        local: dict[tuple[datetime, str], str] = {}

        def local_text(instant: datetime, timezone: str) -> str:
            text = local.get((instant, timezone))
            if text is None:
                text = local[(instant, timezone)] = instant.astimezone(ZoneInfo(timezone)).isoformat()
            return text

        return SlotPage(
            items=[
                SlotOut(
                    practitioner_id=slot.practitioner_id,
                    facility_id=slot.facility_id,
                    start=slot.start,
                    end=slot.end,
                    start_local=local_text(slot.start, slot.timezone),
                    end_local=local_text(slot.end, slot.timezone),
                    timezone=slot.timezone,
                    modes=list(slot.modes),
                )
                for slot in slots
            ]
        )
