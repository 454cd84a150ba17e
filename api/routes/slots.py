"""Free consultation slots, shown in the facility's time zone and in UTC."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated
from zoneinfo import ZoneInfo

from litestar import Controller, get
from litestar.params import FromQuery, QueryParameter

from api.deps import Caller, Conn
from api.schemas import SlotOut, SlotPage
from domain.booking import availability


class SlotController(Controller):
    path = "/v1/slots"
    tags = ["booking"]

    @get("/", summary="Free slots in a date range (facility-local dates)")
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
        )
        items = []
        for slot in slots[:limit]:
            zone = ZoneInfo(slot.timezone)
            items.append(
                SlotOut(
                    practitioner_id=slot.practitioner_id,
                    facility_id=slot.facility_id,
                    start=slot.start,
                    end=slot.end,
                    start_local=slot.start.astimezone(zone).isoformat(),
                    end_local=slot.end.astimezone(zone).isoformat(),
                    timezone=slot.timezone,
                    modes=list(slot.modes),
                )
            )
        return SlotPage(items=items)
