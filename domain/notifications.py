"""The device registry (where a person's pushes go) and the record of what was sent to whom."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from domain.errors import Forbidden, NotFound
from domain.principal import Principal
from infra.db import Connection

Platform = Literal["android", "ios", "web"]
Language = Literal["km", "vi", "fr", "en"]
State = Literal["pending", "sent", "failed", "cancelled"]
FcmToken = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
AppVersion = Annotated[str, msgspec.Meta(max_length=64)]


class DeviceIn(msgspec.Struct, kw_only=True):
    token: FcmToken  # the FCM registration token the app got
    platform: Platform
    app_version: AppVersion | None = None
    language: Language | None = None  # the app's language: staff messages use it


class Device(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    platform: Platform
    app_version: str | None
    language: Language | None
    created_at: dt.datetime
    updated_at: dt.datetime


class Notification(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    kind: str
    channel: Literal["push", "sms"]
    state: State
    title: str
    body: str
    attempts: int
    created_at: dt.datetime
    sent_at: dt.datetime | None
    patient_id: uuid.UUID | None


class FailedNotification(Notification, kw_only=True):
    user_id: uuid.UUID | None
    last_error: str | None
    updated_at: dt.datetime


_DEVICE = "id, platform, app_version, language, created_at, updated_at"


async def register_device(conn: Connection, principal: Principal, data: DeviceIn) -> Device:
    """Register or refresh a device; the same token again updates it (idempotent). A token is a
    phone's: if another login registered it before (the phone changed hands, or another family
    member signed in), it now belongs to this one alone."""
    row = await conn.fetchrow(
        f"""INSERT INTO devices (user_id, token, platform, app_version, language) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (token) DO UPDATE
               SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform, app_version = EXCLUDED.app_version,
                   language = EXCLUDED.language, retired_at = NULL, retired_why = NULL, updated_at = now()
            RETURNING {_DEVICE}""",
        principal.user_id,
        data.token,
        data.platform,
        data.app_version,
        data.language,
    )
    assert row is not None
    return msgspec.convert(dict(row), Device)


async def remove_device(conn: Connection, principal: Principal, device_id: uuid.UUID) -> None:
    removed = await conn.fetchval(
        """UPDATE devices SET retired_at = now(), retired_why = 'removed by its owner', updated_at = now()
            WHERE id = $1 AND user_id = $2 AND retired_at IS NULL RETURNING 1""",
        device_id,
        principal.user_id,
    )
    if removed is None:
        raise NotFound("device_not_found", "no such device of yours")


async def mine(conn: Connection, principal: Principal, *, limit: int) -> list[Notification]:
    """What was sent to me: as staff, and for every patient my login acts for."""
    rows = await conn.fetch(
        """SELECT id, kind, channel, state, title, body, attempts, created_at, sent_at, patient_id
             FROM notifications
            WHERE (user_id = $1 OR patient_id IN (SELECT patient_id FROM patient_accounts WHERE user_id = $1))
              AND available_at <= now()
            ORDER BY created_at DESC, id LIMIT $2""",
        principal.user_id,
        limit,
    )
    return [msgspec.convert(dict(r), Notification) for r in rows]


async def listing(conn: Connection, *, state: State | None, limit: int) -> list[FailedNotification]:
    rows = await conn.fetch(
        """SELECT id, kind, channel, state, title, body, attempts, created_at, sent_at, patient_id, user_id,
                  last_error, updated_at
             FROM notifications WHERE $1::text IS NULL OR state = $1
            ORDER BY updated_at DESC, id LIMIT $2""",
        state,
        limit,
    )
    return [msgspec.convert(dict(r), FailedNotification) for r in rows]


async def for_admin(
    conn: Connection, principal: Principal, *, state: State | None, limit: int
) -> list[FailedNotification]:
    if not principal.is_system_admin:
        raise Forbidden("system_admin_required", "only system administrators see everyone's notifications")
    return await listing(conn, state=state, limit=limit)
