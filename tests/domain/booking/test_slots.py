"""Expanding weekly rules into slots: local wall-clock time, DST gaps and overlaps, exceptions."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time

from domain.booking.slots import Busy, Rule, expand

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
