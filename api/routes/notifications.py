"""Devices to push to, what was sent to me, and the dead letters for administrators."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from api.deps import Caller, Conn
from domain import notifications
from domain.notifications import Device, DeviceIn, FailedNotification, Notification, State


class NotificationController(Controller):
    tags = ["notifications"]

    @post("/v1/me/devices", status_code=HTTP_201_CREATED, summary="Register a device for pushes (idempotent)")
    async def register_device(self, data: JSONBody[DeviceIn], conn: Conn, principal: Caller) -> Device:
        return await notifications.register_device(conn, principal, data)

    @delete("/v1/me/devices/{device_id:uuid}", summary="Stop pushing to a device")
    async def remove_device(self, device_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> None:
        await notifications.remove_device(conn, principal, device_id)

    @get("/v1/me/notifications", summary="What was sent to me: channel and delivery state")
    async def mine(
        self, conn: Conn, principal: Caller, limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50
    ) -> list[Notification]:
        return await notifications.mine(conn, principal, limit=limit)

    @get("/v1/admin/notifications", summary="Notifications by state, e.g. the dead letters (system admin)")
    async def for_admin(
        self,
        conn: Conn,
        principal: Caller,
        wanted: Annotated[State | None, QueryParameter(name="state")] = None,  # "state" is Litestar's name
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[FailedNotification]:
        return await notifications.for_admin(conn, principal, state=wanted, limit=limit)
