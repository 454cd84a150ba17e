"""Expanding weekly rules into slots: local wall-clock time, DST gaps and overlaps, exceptions."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain.booking.slots import Busy, Rule, expand, merged

P, F = uuid.uuid4(), uuid.uuid4()


def _rule(
    tz: str,
    weekday: int,
    start: time,
    end: time,
    minutes: int = 30,
    valid_from: date = date(2020, 1, 1),
    valid_until: date | None = None,
) -> Rule:
    return Rule(
        practitioner_id=P,
        facility_id=F,
        timezone=tz,
        weekday=weekday,
        start_local=start,
        end_local=end,
        slot_minutes=minutes,
        modes=("video",),
        valid_from=valid_from,
        valid_until=valid_until,
    )


class TestExpand:
    def test_phnom_penh_morning(self) -> None:
        slots = expand([_rule("Asia/Phnom_Penh", 1, time(8), time(10))], date(2026, 11, 30), date(2026, 11, 30))
        assert [s.start for s in slots] == [
            datetime(2026, 11, 30, h, m, tzinfo=UTC) for h, m in ((1, 0), (1, 30), (2, 0), (2, 30))
        ]

    def test_same_local_time_across_a_dst_change(self) -> None:
        # Paris: 09:00 local is 08:00 UTC in winter and 07:00 UTC in summer.
        rule = _rule("Europe/Paris", 1, time(9), time(9, 30))
        winter = expand([rule], date(2026, 3, 23), date(2026, 3, 23))
        summer = expand([rule], date(2026, 3, 30), date(2026, 3, 30))
        assert winter[0].start == datetime(2026, 3, 23, 8, tzinfo=UTC)
        assert summer[0].start == datetime(2026, 3, 30, 7, tzinfo=UTC)

    def test_local_times_skipped_by_spring_forward_yield_no_slot(self) -> None:
        # 29 March 2026, Paris: clocks jump from 02:00 to 03:00 (a Sunday).
        slots = expand([_rule("Europe/Paris", 7, time(1), time(4), 60)], date(2026, 3, 29), date(2026, 3, 29))
        assert [s.start.astimezone(UTC).hour for s in slots] == [0, 1]  # 01:00 and 03:00 local; 02:00 never happens

    def test_repeated_local_time_at_fall_back_is_booked_once(self) -> None:
        # 25 October 2026, Paris: 02:00-03:00 happens twice; the first occurrence is the slot.
        slots = expand([_rule("Europe/Paris", 7, time(2), time(3), 60)], date(2026, 10, 25), date(2026, 10, 25))
        assert [s.start for s in slots] == [datetime(2026, 10, 25, 0, tzinfo=UTC)]
        assert slots[0].end == datetime(2026, 10, 25, 1, tzinfo=UTC)

    def test_exceptions_and_validity(self) -> None:
        rule = _rule(
            "Asia/Phnom_Penh", 2, time(8), time(12), 60, valid_from=date(2026, 12, 1), valid_until=date(2026, 12, 8)
        )
        leave = Busy(datetime(2026, 12, 1, 2, 30, tzinfo=UTC), datetime(2026, 12, 1, 3, 30, tzinfo=UTC))
        slots = expand([rule], date(2026, 11, 24), date(2026, 12, 31), [leave])
        days = sorted({s.start.date() for s in slots})
        assert days == [date(2026, 12, 1), date(2026, 12, 8)]
        first_day = [s.start.hour for s in slots if s.start.date() == date(2026, 12, 1)]
        assert first_day == [1, 4]  # 09:00 and 10:00 local overlap the leave


def _slow_starts(rule: Rule, day: date) -> list[datetime]:
    """Each slot's instant looked up on its own: what expand must agree with on every day."""
    zone = ZoneInfo(rule.timezone)
    out: list[datetime] = []
    cursor = datetime.combine(day, rule.start_local)
    step = timedelta(minutes=rule.slot_minutes)
    while cursor + step <= datetime.combine(day, rule.end_local):
        local = cursor.replace(tzinfo=zone)
        as_utc = local.astimezone(UTC)
        if as_utc.astimezone(zone).replace(tzinfo=None) == cursor:  # skipped local times yield none
            out.append(as_utc)
        cursor += step
    return out


class TestEveryDayOfTheYear:
    """expand shares one UTC offset across a day's slots when the clocks do not change inside the
    span; on every day of 2026, in zones with 1 h, 30 min and Ramadan clock changes and for spans
    that start, end or lie inside a gap or an overlap, it must give what a lookup per slot gives."""

    ZONES = ("Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Africa/Casablanca", "America/Santiago",
             "Asia/Phnom_Penh", "Asia/Ho_Chi_Minh", "Africa/Abidjan")  # fmt: skip
    SPANS = ((time(0), time(23, 55), 5), (time(1, 30), time(3, 30), 30), (time(2), time(2, 30), 30),
             (time(2, 15), time(2, 45), 15), (time(0, 30), time(4), 60), (time(8), time(17), 20))  # fmt: skip

    def test_matches_a_lookup_per_slot(self) -> None:
        days = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
        for tz in self.ZONES:
            for start, end, minutes in self.SPANS:
                for weekday in range(1, 8):
                    rule = _rule(tz, weekday, start, end, minutes)
                    got = expand([rule], days[0], days[-1])
                    want = [s for d in days if d.isoweekday() == weekday for s in _slow_starts(rule, d)]
                    assert [s.start for s in got] == want, (tz, start, end, minutes, weekday)
                    assert all(s.end - s.start == timedelta(minutes=minutes) for s in got)

    def test_a_busy_interval_blocks_every_slot_it_touches_and_no_other(self) -> None:
        rule = _rule("Asia/Phnom_Penh", 4, time(8), time(12), 15)  # Thursday 3 December 2026
        day = date(2026, 12, 3)
        at = datetime(2026, 12, 3, 1, tzinfo=UTC)  # 08:00 local
        busy = [
            Busy(at + timedelta(minutes=20), at + timedelta(minutes=40)),  # inside 08:15-08:45
            Busy(at + timedelta(minutes=30), at + timedelta(minutes=50)),  # overlaps the one before
            Busy(at + timedelta(minutes=90), at + timedelta(minutes=105)),  # exactly 09:30-09:45
            Busy(at - timedelta(hours=5), at + timedelta(minutes=1)),  # ends inside the first slot
            Busy(at + timedelta(hours=4), at + timedelta(hours=6)),  # starts at the span's end
        ]
        free = [s.start - at for s in expand([rule], day, day, busy)]
        blocked = {timedelta(minutes=m) for m in (0, 15, 30, 45, 90)}
        assert free == [timedelta(minutes=m) for m in range(0, 240, 15) if timedelta(minutes=m) not in blocked]


def test_merged_gives_what_expanding_each_group_and_one_stable_sort_gave() -> None:
    """Slots made lazily (domain.booking.slots.merged) come in the old order, ties included: one
    practitioner with rules at two facilities starting at the same instants, another practitioner
    in another zone, busy time, a DST change, several days; any prefix is the old list's prefix."""
    other, elsewhere = uuid.uuid4(), uuid.uuid4()

    def rule(practitioner: uuid.UUID, facility: uuid.UUID, tz: str, weekday: int, start: time, minutes: int) -> Rule:
        return Rule(practitioner_id=practitioner, facility_id=facility, timezone=tz, weekday=weekday,
                    start_local=start, end_local=time(23, 0), slot_minutes=minutes, modes=("video",),
                    valid_from=date(2020, 1, 1))  # fmt: skip

    first, last = date(2026, 3, 6), date(2026, 3, 10)  # Europe/London keeps GMT; New York springs forward on the 8th
    groups = [
        ([rule(P, F, "America/New_York", d, time(1, 0), 30) for d in range(1, 8)],
         [Busy(datetime(2026, 3, 9, 14, tzinfo=UTC), datetime(2026, 3, 9, 16, tzinfo=UTC))]),
        ([rule(P, elsewhere, "America/New_York", d, time(1, 0), 15) for d in range(1, 8)], []),
        ([rule(other, F, "Europe/London", d, time(6, 0), 20) for d in (5, 6, 7, 1)], []),
    ]  # fmt: skip
    old = [slot for rules, busy in groups for slot in expand(rules, first, last, busy)]
    old.sort(key=lambda s: (s.start, s.practitioner_id.int))
    new = list(merged(groups, first, last))
    assert new == old
    assert len({(s.start, s.practitioner_id) for s in old}) < len(old)  # ties were there to keep in order
    assert list(itertools.islice(merged(groups, first, last), 37)) == old[:37]
