"""Facilities (health posts up to reference centres) and the referral network between them."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import msgspec

from domain import access
from domain.errors import Conflict, InvalidInput, NotFound
from domain.fields import Code, Name, Phone, ShortText
from domain.phone import normalize
from domain.principal import Principal
from infra.db import Connection

Kind = Literal["health_post", "health_centre", "district_hospital", "reference_centre"]
REFERRAL_TARGET_KINDS = ("district_hospital", "reference_centre")


class FacilityIn(msgspec.Struct, kw_only=True):
    name: Name
    kind: Kind
    timezone: Code
    country: Code
    province: ShortText | None = None
    latitude: float | None = None
    longitude: float | None = None
    phone: Phone | None = None


class FacilityPatch(msgspec.Struct, kw_only=True):
    name: Name | None = None
    timezone: Code | None = None
    province: ShortText | None = None
    latitude: float | None = None
    longitude: float | None = None
    phone: Phone | None = None
    # Quiet hours, "HH:MM" on the facility's clock: non-urgent notifications wait them out
    # (notifications/quiet.py). Equal start and end: no quiet hours.
    quiet_start: Code | None = None
    quiet_end: Code | None = None


class Facility(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    kind: Kind
    timezone: str
    country: str
    province: str | None
    latitude: float | None
    longitude: float | None
    phone: str | None
    quiet_start: str  # "HH:MM", the facility's local time
    quiet_end: str
    refers_to: list[uuid.UUID]
    created_at: datetime
    updated_at: datetime


def check_timezone(name: str, field: str = "timezone") -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("invalid_timezone", f"'{name}' is not an IANA time zone", field=field) from None


def _quiet_time(value: str, field: str) -> time:
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        raise InvalidInput("invalid_time", f"'{value}' is not a time of day like 21:00", field=field) from None
    if parsed.tzinfo is not None:
        raise InvalidInput("invalid_time", "quiet hours use the facility's local time: give no offset", field=field)
    return parsed


def _validate(name: str | None, country: str | None, lat: float | None, lon: float | None) -> None:
    if name is not None and not 1 <= len(name.strip()) <= 200:
        raise InvalidInput("invalid_name", "name is 1 to 200 characters", field="name")
    if country is not None and not (len(country) == 2 and country.isalpha() and country.isupper()):
        raise InvalidInput("invalid_country", "country is an ISO 3166-1 alpha-2 code, e.g. KH", field="country")
    if lat is not None and not -90 <= lat <= 90:
        raise InvalidInput("out_of_range", "latitude is -90 to 90", field="latitude")
    if lon is not None and not -180 <= lon <= 180:
        raise InvalidInput("out_of_range", "longitude is -180 to 180", field="longitude")


_SELECT = """SELECT f.*, coalesce(array_agg(r.to_facility_id ORDER BY r.to_facility_id)
                    FILTER (WHERE r.to_facility_id IS NOT NULL), '{}') AS refers_to
             FROM facilities f LEFT JOIN referral_links r ON r.from_facility_id = f.id"""


def from_row(row: asyncpg.Record) -> Facility:
    """A facility from a row of the facilities table (also the FHIR search's rows)."""
    return Facility(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        timezone=row["timezone"],
        country=row["country"],
        province=row["province"],
        latitude=row["latitude"],
        longitude=row["longitude"],
        phone=row["phone"],
        quiet_start=row["quiet_start"].strftime("%H:%M"),
        quiet_end=row["quiet_end"].strftime("%H:%M"),
        refers_to=list(row["refers_to"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def create(
    conn: Connection,
    principal: Principal,
    data: FacilityIn,
    *,
    default_region: str,
    facility_id: uuid.UUID | None = None,
) -> Facility:
    access.require_system_admin(principal)
    _validate(data.name, data.country, data.latitude, data.longitude)
    check_timezone(data.timezone)
    phone = normalize(data.phone, data.country) if data.phone else None
    new_id = facility_id or uuid.uuid4()
    await conn.execute(
        """INSERT INTO facilities (id, name, kind, timezone, country, province, latitude, longitude, phone)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        new_id,
        data.name.strip(),
        data.kind,
        data.timezone,
        data.country,
        data.province,
        data.latitude,
        data.longitude,
        phone,
    )
    return await get(conn, new_id)


async def get(conn: Connection, facility_id: uuid.UUID) -> Facility:
    row = await conn.fetchrow(f"{_SELECT} WHERE f.id = $1 GROUP BY f.id", facility_id)
    if row is None:
        raise NotFound("facility_not_found", "no such facility")
    return from_row(row)


async def search(
    conn: Connection,
    *,
    kind: Kind | None = None,
    country: str | None = None,
    name: str | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> list[Facility]:
    """Ordered by (name, id); `after` is the id of the last one seen (keyset paging)."""
    rows = await conn.fetch(
        f"""{_SELECT} WHERE ($1::text IS NULL OR f.kind = $1) AND ($2::text IS NULL OR f.country = $2)
              AND ($3::text IS NULL OR f.name ILIKE '%' || $3 || '%')
              AND ($5::uuid IS NULL OR (f.name, f.id) > (SELECT a.name, a.id FROM facilities a WHERE a.id = $5))
            GROUP BY f.id ORDER BY f.name, f.id LIMIT $4""",
        kind,
        country,
        name,
        limit,
        after,
    )
    return [from_row(r) for r in rows]


async def update(conn: Connection, principal: Principal, facility_id: uuid.UUID, patch: FacilityPatch) -> Facility:
    access.require_facility_admin(principal, facility_id)
    current = await get(conn, facility_id)
    _validate(patch.name, None, patch.latitude, patch.longitude)
    if patch.timezone is not None:
        check_timezone(patch.timezone)
    phone = normalize(patch.phone, current.country) if patch.phone else None
    quiet_start = _quiet_time(patch.quiet_start, "quiet_start") if patch.quiet_start is not None else None
    quiet_end = _quiet_time(patch.quiet_end, "quiet_end") if patch.quiet_end is not None else None
    await conn.execute(
        """UPDATE facilities SET name = coalesce($2, name), timezone = coalesce($3, timezone),
                  province = coalesce($4, province), latitude = coalesce($5, latitude),
                  longitude = coalesce($6, longitude), phone = coalesce($7, phone),
                  quiet_start = coalesce($8, quiet_start), quiet_end = coalesce($9, quiet_end), updated_at = now()
           WHERE id = $1""",
        facility_id,
        patch.name,
        patch.timezone,
        patch.province,
        patch.latitude,
        patch.longitude,
        phone,
        quiet_start,
        quiet_end,
    )
    return await get(conn, facility_id)


async def add_referral_target(
    conn: Connection, principal: Principal, facility_id: uuid.UUID, target_id: uuid.UUID
) -> Facility:
    access.require_facility_admin(principal, facility_id)
    await get(conn, facility_id)
    target = await conn.fetchval("SELECT kind FROM facilities WHERE id = $1", target_id)
    if target is None:
        raise NotFound("facility_not_found", "no such target facility", field="facility_id")
    if target_id == facility_id:
        raise InvalidInput("self_referral", "a facility cannot refer to itself", field="facility_id")
    if target not in REFERRAL_TARGET_KINDS:
        raise InvalidInput(
            "not_a_referral_target", "only hospitals and reference centres take referrals", field="facility_id"
        )
    inserted = await conn.fetchval(
        """INSERT INTO referral_links (from_facility_id, to_facility_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING 1""",
        facility_id,
        target_id,
    )
    if inserted is None:
        raise Conflict("already_linked", "this facility already refers there")
    return await get(conn, facility_id)
