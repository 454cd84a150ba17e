"""Publishing availability (weekly rules, leave, closures) and listing free slots."""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import msgspec
from asyncpg import Record

from domain import access
from domain.booking.locks import lock_practitioner
from domain.booking.slots import Busy, Rule, Slot, expand, slot_at
from domain.errors import InvalidInput
from domain.fields import Code, Int32
from domain.principal import Principal
from infra.db import Connection

MAX_RANGE_DAYS = 62
ACTIVE = ("booked", "checked_in", "in_progress")


class RuleInput(msgspec.Struct, frozen=True, kw_only=True):
    """A weekly rule as written by people: times as "HH:MM" (or "HH:MM:SS") local wall-clock."""

    weekday: Int32
    start: Code
    end: Code
    slot_minutes: Int32 = 30
    modes: Annotated[tuple[Code, ...], msgspec.Meta(max_length=10)] = ("video", "audio")
    valid_from: date | None = None
    valid_until: date | None = None


_MODES = {"video", "audio", "async"}


class _Checked(msgspec.Struct, frozen=True):
    rule: RuleInput
    start: time
    end: time


def _parse_time(value: str, field: str) -> time:
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        raise InvalidInput("invalid_time", f"'{value}' is not a time of day like 08:30", field=field) from None
    if parsed.tzinfo is not None:
        raise InvalidInput("invalid_time", "rules use the facility's local time: give no offset", field=field)
    return parsed


def _check_rules(rules: Sequence[RuleInput]) -> list[_Checked]:
    checked: list[_Checked] = []
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        if not 1 <= rule.weekday <= 7:
            raise InvalidInput("invalid_weekday", "weekday is 1 (Monday) to 7 (Sunday)", field=f"{where}.weekday")
        start, end = _parse_time(rule.start, f"{where}.start"), _parse_time(rule.end, f"{where}.end")
        checked.append(_Checked(rule, start, end))
        if end <= start:
            raise InvalidInput("invalid_time_range", "end must be after start", field=f"{where}.end")
        if not 5 <= rule.slot_minutes <= 480:
            raise InvalidInput("invalid_slot_length", "slot_minutes is 5 to 480", field=f"{where}.slot_minutes")
        if not rule.modes or not set(rule.modes) <= _MODES:
            raise InvalidInput("invalid_mode", "modes are video, audio, async", field=f"{where}.modes")
        if rule.valid_from and rule.valid_until and rule.valid_until < rule.valid_from:
            raise InvalidInput("invalid_date_range", "valid_until is before valid_from", field=f"{where}.valid_until")
    by_day: dict[int, list[_Checked]] = defaultdict(list)
    for item in checked:
        by_day[item.rule.weekday].append(item)
    for day_rules in by_day.values():
        day_rules.sort(key=lambda c: c.start)
        for a, b in itertools.pairwise(day_rules):
            if b.start < a.end and _dates_overlap(a.rule, b.rule):
                raise InvalidInput("overlapping_rules", "two rules overlap on the same weekday", field="rules")
    return checked


def _dates_overlap(a: RuleInput, b: RuleInput) -> bool:
    a_from, b_from = a.valid_from or date.min, b.valid_from or date.min
    a_until, b_until = a.valid_until or date.max, b.valid_until or date.max
    return a_from <= b_until and b_from <= a_until


async def replace_rules(
    conn: Connection,
    principal: Principal,
    practitioner_id: uuid.UUID,
    facility_id: uuid.UUID,
    rules: Sequence[RuleInput],
) -> list[Rule]:
    """Replace the practitioner's weekly rules at one facility. Booked appointments are kept."""
    await access.require_can_manage_schedule(conn, principal, practitioner_id, facility_id)
    checked = _check_rules(rules)
    today = datetime.now(UTC).date()
    # Two replaces at once would each delete only the rules they saw and both insert theirs
    # (overlapping weekly rules); under the lock the second replaces what the first wrote.
    await lock_practitioner(conn, practitioner_id)
    await conn.execute(
        "DELETE FROM availability_rules WHERE practitioner_id = $1 AND facility_id = $2",
        practitioner_id,
        facility_id,
    )
    await conn.executemany(
        """INSERT INTO availability_rules (id, practitioner_id, facility_id, weekday, start_local, end_local,
                                           slot_minutes, modes, valid_from, valid_until)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        [
            (
                uuid.uuid4(),
                practitioner_id,
                facility_id,
                c.rule.weekday,
                c.start,
                c.end,
                c.rule.slot_minutes,
                list(c.rule.modes),
                c.rule.valid_from or today,
                c.rule.valid_until,
            )
            for c in checked
        ],
    )
    return await rules_of(conn, [practitioner_id], facility_id=facility_id)


async def rules_of(
    conn: Connection,
    practitioner_ids: Sequence[uuid.UUID] | None = None,
    *,
    facility_id: uuid.UUID | None = None,
    specialty: str | None = None,
    mode: str | None = None,
) -> list[Rule]:
    rows = await conn.fetch(
        """SELECT r.practitioner_id, r.facility_id, f.timezone, r.weekday, r.start_local, r.end_local,
                  r.slot_minutes, r.modes, r.valid_from, r.valid_until
           FROM availability_rules r
           JOIN facilities f ON f.id = r.facility_id
           JOIN practitioners p ON p.id = r.practitioner_id
           WHERE ($1::uuid[] IS NULL OR r.practitioner_id = ANY($1))
             AND ($2::uuid IS NULL OR r.facility_id = $2)
             AND ($3::text IS NULL OR $3 = ANY(p.specialties))
             AND ($4::text IS NULL OR $4 = ANY(r.modes))
           ORDER BY r.practitioner_id, r.weekday, r.start_local""",
        None if practitioner_ids is None else list(practitioner_ids),
        facility_id,
        specialty,
        mode,
    )
    return [_to_rule(r) for r in rows]


def _to_rule(r: Record) -> Rule:
    return Rule(
        practitioner_id=r["practitioner_id"],
        facility_id=r["facility_id"],
        timezone=r["timezone"],
        weekday=r["weekday"],
        start_local=r["start_local"],
        end_local=r["end_local"],
        slot_minutes=r["slot_minutes"],
        modes=tuple(r["modes"]),
        valid_from=r["valid_from"],
        valid_until=r["valid_until"],
    )


class BusyMap(msgspec.Struct, frozen=True):
    by_practitioner: dict[uuid.UUID, list[Busy]]
    by_facility: dict[uuid.UUID, list[Busy]]  # closures block every practitioner there


async def busy_intervals(
    conn: Connection,
    practitioner_ids: Sequence[uuid.UUID],
    facility_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
) -> BusyMap:
    """Leave, facility closures and active appointments overlapping [start, end)."""
    rows = await conn.fetch(
        """SELECT practitioner_id, NULL::uuid AS facility_id, start_at AS s, end_at AS e FROM appointments
           WHERE practitioner_id = ANY($1) AND status = ANY($5) AND start_at < $4 AND end_at > $3
           UNION ALL
           SELECT practitioner_id, facility_id, starts_at, ends_at FROM availability_exceptions
           WHERE (practitioner_id = ANY($1) OR facility_id = ANY($2)) AND starts_at < $4 AND ends_at > $3""",
        list(practitioner_ids),
        list(facility_ids),
        start,
        end,
        list(ACTIVE),
    )
    busy = BusyMap(defaultdict(list), defaultdict(list))
    for row in rows:
        interval = Busy(row["s"], row["e"])
        if row["practitioner_id"] is not None:
            busy.by_practitioner[row["practitioner_id"]].append(interval)
        else:
            busy.by_facility[row["facility_id"]].append(interval)
    return busy


def free_slots(rules: Sequence[Rule], busy: BusyMap, first_day: date, last_day: date) -> list[Slot]:
    groups: dict[tuple[uuid.UUID, uuid.UUID], list[Rule]] = defaultdict(list)
    for rule in rules:
        groups[(rule.practitioner_id, rule.facility_id)].append(rule)
    slots: list[Slot] = []
    for (practitioner_id, facility_id), group in groups.items():
        blocked = busy.by_practitioner.get(practitioner_id, []) + busy.by_facility.get(facility_id, [])
        slots.extend(expand(group, first_day, last_day, blocked))
    slots.sort(key=lambda s: (s.start, s.practitioner_id.int))  # the order of their text, without making it
    return slots


async def list_free_slots(
    conn: Connection,
    *,
    first_day: date,
    last_day: date,
    practitioner_id: uuid.UUID | None = None,
    facility_id: uuid.UUID | None = None,
    specialty: str | None = None,
    mode: str | None = None,
    not_before: datetime | None = None,
) -> list[Slot]:
    if last_day < first_day:
        raise InvalidInput("invalid_date_range", "'to' is before 'from'", field="to")
    if (last_day - first_day).days > MAX_RANGE_DAYS:
        raise InvalidInput("date_range_too_long", f"at most {MAX_RANGE_DAYS} days at once", field="to")
    rules = await rules_of(
        conn,
        None if practitioner_id is None else [practitioner_id],
        facility_id=facility_id,
        specialty=specialty,
        mode=mode,
    )
    if not rules:
        return []
    # Local dates may sit up to 14 h either side of UTC dates.
    window_start = datetime.combine(first_day, time.min, tzinfo=UTC) - timedelta(days=1)
    window_end = datetime.combine(last_day, time.max, tzinfo=UTC) + timedelta(days=1)
    busy = await busy_intervals(
        conn,
        sorted({r.practitioner_id for r in rules}),
        sorted({r.facility_id for r in rules}),
        window_start,
        window_end,
    )
    slots = free_slots(rules, busy, first_day, last_day)
    cutoff = not_before or datetime.now(UTC)
    return [s for s in slots if s.start >= cutoff]


def slot_rules_sql(practitioner: str, start: str) -> tuple[str, str]:
    """(columns, joins) that load a practitioner's rules with a `blocked` flag for a slot at
    `start` ($n placeholders given by the caller), so a caller can fold them into its own query."""
    columns = f"""r.practitioner_id, r.facility_id, f.timezone, r.weekday, r.start_local, r.end_local,
                  r.slot_minutes, r.modes, r.valid_from, r.valid_until,
                  EXISTS (SELECT 1 FROM availability_exceptions e
                          WHERE (e.practitioner_id = r.practitioner_id OR e.facility_id = r.facility_id)
                            AND e.starts_at < {start}::timestamptz + make_interval(mins => r.slot_minutes)
                            AND e.ends_at > {start}::timestamptz) AS blocked"""
    # Only rules whose weekday can be the local day of `start`: a UTC offset is less than a day, so
    # that day is the UTC day or one next to it (3 rules read of a week's 7; no time zone data
    # needed here, slot_at decides in the facility's zone).
    near_day = f"(r.weekday - extract(isodow FROM {start}::timestamptz AT TIME ZONE 'UTC')::int + 7) % 7 IN (0, 1, 6)"
    joins = f"""availability_rules r JOIN facilities f
                ON f.id = r.facility_id AND r.practitioner_id = {practitioner} AND {near_day}"""
    return columns, joins


def pick_slot(rows: Sequence[Record], start: datetime) -> tuple[Rule, Slot]:
    """The published, unblocked slot starting at `start` among rows loaded by `slot_rules_sql`."""
    for row in rows:
        if row["practitioner_id"] is None:  # an outer join found no rule
            continue
        if start.astimezone(ZoneInfo(row["timezone"])).isoweekday() != row["weekday"]:
            continue  # not the local day of `start` (slot_at would say so, after building the rule)
        rule = _to_rule(row)
        slot = slot_at(rule, start)
        if slot is not None and not row["blocked"]:
            return rule, slot
    raise InvalidInput("slot_unavailable", "the practitioner has no free slot starting at that time", field="start")


async def find_slot(conn: Connection, practitioner_id: uuid.UUID, start: datetime) -> tuple[Rule, Slot]:
    """The published slot of `practitioner_id` starting at `start`, ignoring appointments (the
    database's exclusion constraint decides those, race-free)."""
    columns, joins = slot_rules_sql("$1", "$2")
    rows = await conn.fetch(f"SELECT {columns} FROM {joins}", practitioner_id, start)
    return pick_slot(rows, start)
