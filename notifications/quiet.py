"""Quiet hours: a facility's nights, when only urgent messages may wake people.

Each facility keeps a daily quiet period as wall-clock times in its own time zone (migration
0015: 21:00-07:00 unless its admin sets others; start = end means none). A recipient's quiet
hours are those of their facility: a patient's home facility, a health worker's facility in the
matter (notifications.plan).

The rule (README, "Quiet hours"):
- urgent messages go at once, whatever the hour: "join now" (the specialist is waiting) and the
  silent data-only syncs, which show nothing;
- every other message (booked / moved / cancelled, reminders, referral answered, result ready)
  that falls due inside quiet hours is held until they end,
- unless the consultation it is about begins before they end: then it goes at its due time (a
  1 h reminder for a 07:00 consultation at 06:00; the patient has to be up for it anyway, and a
  notice held past the start would be worthless).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import msgspec

DEFAULT_START = dt.time(21, 0)
DEFAULT_END = dt.time(7, 0)


class QuietHours(msgspec.Struct, frozen=True, kw_only=True):
    timezone: str
    start: dt.time = DEFAULT_START
    end: dt.time = DEFAULT_END

    def release(self, due: dt.datetime) -> dt.datetime:
        """When a non-urgent message due at `due` may go: `due` itself outside quiet hours, else
        the end of the quiet period it falls in (an aware UTC instant either way)."""
        if self.start == self.end:
            return due
        zone = ZoneInfo(self.timezone)
        local = due.astimezone(zone)
        at = local.time().replace(tzinfo=None)
        day = local.date()
        if self.start < self.end:  # a period inside one day, e.g. 12:00-14:00
            if not self.start <= at < self.end:
                return due
        elif at >= self.start:  # across midnight, in its evening part: it ends tomorrow
            day += dt.timedelta(days=1)
        elif at >= self.end:  # across midnight, and `due` is in the day between
            return due
        ends = dt.datetime.combine(day, self.end, tzinfo=zone)
        return max(due, ends.astimezone(dt.UTC))


def hold(quiet: QuietHours, due: dt.datetime, *, urgent: bool, consultation_start: dt.datetime | None) -> dt.datetime:
    """The instant a message due at `due` goes, by the rule above."""
    if urgent:
        return due
    released = quiet.release(due)
    if consultation_start is not None and released >= consultation_start:
        return due
    return released
