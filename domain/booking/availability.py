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
from domain.booking.slots import Busy, Rule, Slot, merged, slot_at
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


_RULE_COLUMNS = """r.practitioner_id, r.facility_id, f.timezone, r.weekday, r.start_local, r.end_local,
                   r.slot_minutes, r.modes, r.valid_from, r.valid_until"""


def _rules_sql(
    practitioner_ids: Sequence[uuid.UUID] | None,
    facility_id: uuid.UUID | None,
    specialty: str | None,
    mode: str | None,
    args: list[object],
) -> str:
    """SELECT of the rules matching the filters given (their values appended to `args`).

    Only the filters given are written, so each combination is its own prepared statement with a
    plan of its own (an index scan on the practitioner, kept as PostgreSQL's generic plan), where
    `($1 IS NULL OR ...)` for every filter made it plan anew on each call or scan every rule."""

    def arg(value: object, cast: str) -> str:
        args.append(value)
        return f"${len(args)}::{cast}"

    joins = "availability_rules r JOIN facilities f ON f.id = r.facility_id"
    conditions = ["true"]
    if practitioner_ids is not None:
        conditions.append(f"r.practitioner_id = ANY({arg(list(practitioner_ids), 'uuid[]')})")
    if facility_id is not None:
        conditions.append(f"r.facility_id = {arg(facility_id, 'uuid')}")
    if specialty is not None:
        joins += " JOIN practitioners p ON p.id = r.practitioner_id"
        conditions.append(f"{arg(specialty, 'text')} = ANY(p.specialties)")
    if mode is not None:
        conditions.append(f"{arg(mode, 'text')} = ANY(r.modes)")
    return f"SELECT {_RULE_COLUMNS} FROM {joins} WHERE {' AND '.join(conditions)}"


def _in_order(rules: list[Rule]) -> list[Rule]:
    # PostgreSQL orders uuids as their bytes, Python as their integers: the same order.
    rules.sort(key=lambda r: (r.practitioner_id.int, r.weekday, r.start_local))
    return rules


async def rules_of(
    conn: Connection,
    practitioner_ids: Sequence[uuid.UUID] | None = None,
    *,
    facility_id: uuid.UUID | None = None,
    specialty: str | None = None,
    mode: str | None = None,
) -> list[Rule]:
    """Rules in order of practitioner, weekday and start."""
    args: list[object] = []
    rows = await conn.fetch(_rules_sql(practitioner_ids, facility_id, specialty, mode, args), *args)
    return _in_order([_to_rule(r) for r in rows])


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


def _busy_sql(practitioners: str, facilities: str, start: str, end: str, statuses: str) -> str:
    """Leave, facility closures and active appointments overlapping [start, end): rows of
    (practitioner_id, facility_id, s, e), facility_id NULL for appointments and practitioner_id
    NULL for closures; arguments as SQL expressions (arrays of ids)."""
    return f"""SELECT practitioner_id, NULL::uuid AS facility_id, start_at AS s, end_at AS e FROM appointments
           WHERE practitioner_id = ANY({practitioners}) AND status = ANY({statuses})
             AND start_at < {end} AND end_at > {start}
           UNION ALL
           SELECT practitioner_id, facility_id, starts_at, ends_at FROM availability_exceptions
           WHERE (practitioner_id = ANY({practitioners}) OR facility_id = ANY({facilities}))
             AND starts_at < {end} AND ends_at > {start}"""


def _add_busy(busy: BusyMap, row: Record) -> None:
    interval = Busy(row["s"], row["e"])
    if row["practitioner_id"] is not None:
        busy.by_practitioner[row["practitioner_id"]].append(interval)
    else:
        busy.by_facility[row["facility_id"]].append(interval)


async def _rules_and_busy(
    conn: Connection,
    practitioner_ids: Sequence[uuid.UUID] | None,
    facility_id: uuid.UUID | None,
    specialty: str | None,
    mode: str | None,
    start: datetime,
    end: datetime,
) -> tuple[list[Rule], BusyMap]:
    """rules_of, then the busy intervals of their practitioners and facilities, in ONE statement
    (one round trip and one snapshot where there were two): a rule's row has no busy interval
    (`s` is NULL), a busy row no rule."""
    args: list[object] = []
    rules_sql = _rules_sql(practitioner_ids, facility_id, specialty, mode, args)
    window = [f"${len(args) + 1}::timestamptz", f"${len(args) + 2}::timestamptz", f"${len(args) + 3}::text[]"]
    args += [start, end, list(ACTIVE)]
    busy_sql = _busy_sql(
        "ARRAY(SELECT DISTINCT practitioner_id FROM rules)", "ARRAY(SELECT DISTINCT facility_id FROM rules)", *window
    )
    rows = await conn.fetch(
        f"""WITH rules AS MATERIALIZED ({rules_sql})
            SELECT rules.*, NULL::timestamptz AS s, NULL::timestamptz AS e FROM rules
            UNION ALL
            SELECT busy.practitioner_id, busy.facility_id, {", ".join(["NULL"] * 8)}, busy.s, busy.e
            FROM ({busy_sql}) busy""",
        *args,
    )
    rules: list[Rule] = []
    busy = BusyMap(defaultdict(list), defaultdict(list))
    for row in rows:
        if row["s"] is None:
            rules.append(_to_rule(row))
        else:
            _add_busy(busy, row)
    return _in_order(rules), busy


def _groups(rules: Sequence[Rule], busy: BusyMap) -> list[tuple[list[Rule], list[Busy]]]:
    """Rules by (practitioner, facility), in order of first appearance, each with what blocks it."""
    groups: dict[tuple[uuid.UUID, uuid.UUID], list[Rule]] = defaultdict(list)
    for rule in rules:
        groups[(rule.practitioner_id, rule.facility_id)].append(rule)
    return [
        (group, busy.by_practitioner.get(practitioner_id, []) + busy.by_facility.get(facility_id, []))
        for (practitioner_id, facility_id), group in groups.items()
    ]


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
    limit: int | None = None,
) -> list[Slot]:
    """Free slots in order of start (then practitioner), from `not_before` (now), the first
    `limit` of them (all if None)."""
    if last_day < first_day:
        raise InvalidInput("invalid_date_range", "'to' is before 'from'", field="to")
    if (last_day - first_day).days > MAX_RANGE_DAYS:
        raise InvalidInput("date_range_too_long", f"at most {MAX_RANGE_DAYS} days at once", field="to")
    # Local dates may sit up to 14 h either side of UTC dates.
    window_start = datetime.combine(first_day, time.min, tzinfo=UTC) - timedelta(days=1)
    window_end = datetime.combine(last_day, time.max, tzinfo=UTC) + timedelta(days=1)
    rules, busy = await _rules_and_busy(
        conn,
        None if practitioner_id is None else [practitioner_id],
        facility_id,
        specialty,
        mode,
        window_start,
        window_end,
    )
    if not rules:
        return []
    cutoff = not_before or datetime.now(UTC)
    upcoming = (s for s in merged(_groups(rules, busy), first_day, last_day) if s.start >= cutoff)
    return list(itertools.islice(upcoming, limit))


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
