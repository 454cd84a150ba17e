"""Expanding weekly availability rules into concrete slots. Pure: no I/O.

Rules are written in the facility's wall-clock time; a slot is the UTC instant that wall-clock
time denotes on that date. Across a DST change a local time that does not exist (spring forward)
yields no slot, and one that occurs twice (fall back) yields its first occurrence, so a rule
"09:00-12:00 every Monday" means 09:00 local all year round.
"""

from __future__ import annotations

import bisect
import heapq
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    practitioner_id: uuid.UUID
    facility_id: uuid.UUID
    timezone: str
    weekday: int  # ISO: 1 = Monday
    start_local: time
    end_local: time
    slot_minutes: int
    modes: tuple[str, ...]
    valid_from: date
    valid_until: date | None = None


class Busy(msgspec.Struct, frozen=True):
    """A UTC interval when no slot may start or run: leave, a holiday, a booked appointment."""

    start: datetime
    end: datetime


class Slot(msgspec.Struct, frozen=True, kw_only=True):
    practitioner_id: uuid.UUID
    facility_id: uuid.UUID
    start: datetime  # UTC
    end: datetime  # UTC
    timezone: str
    modes: tuple[str, ...]


def _local_dates(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def _instant(day: date, at: time, zone: ZoneInfo) -> datetime | None:
    """The UTC instant of a wall-clock time, or None if the clocks skip over it that day."""
    local = datetime.combine(day, at, tzinfo=zone)
    as_utc = local.astimezone(UTC)
    if as_utc.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return as_utc


def _starts(rule: Rule, day: date, zone: ZoneInfo) -> Iterator[datetime]:
    """The UTC starts of `rule`'s slots on local `day`, in order (DST semantics of `_instant`)."""
    step = timedelta(minutes=rule.slot_minutes)
    first = datetime.combine(day, rule.start_local)
    last = datetime.combine(day, rule.end_local) - step
    if last < first:
        return
    offset = first.replace(tzinfo=zone).utcoffset()
    if (
        offset is not None
        and offset == last.replace(tzinfo=zone).utcoffset()
        and _instant(day, first.time(), zone) is not None  # not a span inside a spring-forward gap
        and _instant(day, last.time(), zone) is not None
    ):
        # No clock change inside the span (the usual day): every slot is the same offset from its
        # wall-clock time, so no slot needs its own time zone lookup (a busy day has 288 of them).
        cursor = first.replace(tzinfo=UTC) - offset
        end = last.replace(tzinfo=UTC) - offset
        while cursor <= end:
            yield cursor
            cursor += step
        return
    cursor = first
    while cursor <= last:
        start = _instant(day, cursor.time(), zone)
        cursor += step
        if start is not None:
            yield start


class _Blocked:
    """Busy intervals merged into disjoint, sorted spans: whether a slot overlaps one is a binary
    search, not a scan (a practitioner's day may hold hundreds of bookings)."""

    def __init__(self, busy: Iterable[Busy]) -> None:
        self.starts: list[datetime] = []
        self.ends: list[datetime] = []
        for b in sorted(busy, key=lambda b: b.start):
            if self.ends and b.start <= self.ends[-1]:
                self.ends[-1] = max(self.ends[-1], b.end)
            else:
                self.starts.append(b.start)
                self.ends.append(b.end)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        # The last span starting before `end` ends latest of all such spans (they are disjoint).
        i = bisect.bisect_left(self.starts, end) - 1
        return i >= 0 and self.ends[i] > start


def _rule_days(rule: Rule, first_day: date, last_day: date) -> Iterator[date]:
    """The local dates in [first_day, last_day] the rule is valid on and falls on."""
    for day in _local_dates(max(first_day, rule.valid_from), min(last_day, rule.valid_until or last_day)):
        if day.isoweekday() == rule.weekday:
            yield day


def _day_slots(rule: Rule, day: date, zone: ZoneInfo, blocked: _Blocked) -> Iterator[Slot]:
    """`rule`'s slots on local `day` that overlap nothing blocked, in order of start."""
    step = timedelta(minutes=rule.slot_minutes)
    for start in _starts(rule, day, zone):
        end = start + step
        if not blocked.overlaps(start, end):
            yield Slot(
                practitioner_id=rule.practitioner_id,
                facility_id=rule.facility_id,
                start=start,
                end=end,
                timezone=rule.timezone,
                modes=rule.modes,
            )


def _order(slot: Slot) -> tuple[datetime, int]:
    return slot.start, slot.practitioner_id.int  # the order of their text, without making it


def expand(rules: Iterable[Rule], first_day: date, last_day: date, busy: Iterable[Busy] = ()) -> list[Slot]:
    """Slots of `rules` whose local date lies in [first_day, last_day], minus any overlapping `busy`."""
    blocked = _Blocked(busy)
    slots: list[Slot] = []
    for rule in rules:
        zone = ZoneInfo(rule.timezone)
        for day in _rule_days(rule, first_day, last_day):
            slots.extend(_day_slots(rule, day, zone, blocked))
    slots.sort(key=_order)
    return slots


def merged(groups: Iterable[tuple[Iterable[Rule], Iterable[Busy]]], first_day: date, last_day: date) -> Iterator[Slot]:
    """The slots of every group (rules, busy) as `expand` gives them, all in one order, made as
    they are taken: a caller that wants the first 50 of a day's 288 makes about 50. The order is
    exactly that of expanding each group and one stable sort: each rule's day comes out in order,
    and heapq.merge breaks ties by the place of its input, here the order `expand` appends in."""
    days: list[Iterator[Slot]] = []
    for rules, busy in groups:
        blocked = _Blocked(busy)
        for rule in rules:
            zone = ZoneInfo(rule.timezone)
            days += (_day_slots(rule, day, zone, blocked) for day in _rule_days(rule, first_day, last_day))
    return heapq.merge(*days, key=_order)


def slot_at(rule: Rule, start: datetime) -> Slot | None:
    """The slot of `rule` starting exactly at `start`, if `expand` would produce it (busy aside).

    The booking path checks one instant; this answers in constant time what expanding the
    whole day would, with the same DST semantics.
    """
    zone = ZoneInfo(rule.timezone)
    local = start.astimezone(zone)
    day = local.date()
    if day.isoweekday() != rule.weekday or day < rule.valid_from or (rule.valid_until and day > rule.valid_until):
        return None
    step = timedelta(minutes=rule.slot_minutes)
    offset = datetime.combine(day, local.time()) - datetime.combine(day, rule.start_local)
    span = datetime.combine(day, rule.end_local) - datetime.combine(day, rule.start_local)
    if offset < timedelta(0) or offset + step > span or offset % step:
        return None
    if _instant(day, local.time().replace(tzinfo=None), zone) != start:
        return None  # the second occurrence of a repeated local time, or a skipped one
    start = start.astimezone(UTC)  # the caller may have written it with any offset
    return Slot(
        practitioner_id=rule.practitioner_id,
        facility_id=rule.facility_id,
        start=start,
        end=start + step,
        timezone=rule.timezone,
        modes=rule.modes,
    )


def local_day(instant: datetime, timezone: str) -> date:
    return instant.astimezone(ZoneInfo(timezone)).date()
