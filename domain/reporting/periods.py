"""DHIS2 periods: the identifiers DHIS2 uses for a reporting period, read as a span of local
calendar days. Each facility's figures are counted between the first day's midnight and the
day after the last day's midnight in the facility's own time zone (figures.py), so a
consultation at 23:30 on 30 November in Phnom Penh is November's, whatever UTC says.

Supported: daily `20261130`, ISO weekly `2026W49` (Monday to Sunday, as DHIS2's `Weekly`), and
monthly `202611`. Other DHIS2 period types (quarters, financial years...) are refused.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Literal

import msgspec

from domain.errors import InvalidInput

PeriodType = Literal["Daily", "Weekly", "Monthly"]

_DAILY = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_WEEKLY = re.compile(r"^(\d{4})W(\d{1,2})$")
_MONTHLY = re.compile(r"^(\d{4})(\d{2})$")


class Period(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # as DHIS2 writes it
    type: PeriodType
    first_day: date
    end_day: date  # the day after the last day (a half-open span)


def parse(text: str) -> Period:
    """The period named by a DHIS2 period identifier; InvalidInput `invalid_period` otherwise."""
    text = text.strip()
    try:
        if m := _DAILY.match(text):
            day = date(int(m[1]), int(m[2]), int(m[3]))
            return Period(id=text, type="Daily", first_day=day, end_day=day + timedelta(days=1))
        if m := _WEEKLY.match(text):
            monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
            return Period(id=f"{m[1]}W{int(m[2])}", type="Weekly", first_day=monday, end_day=monday + timedelta(days=7))
        if m := _MONTHLY.match(text):
            first = date(int(m[1]), int(m[2]), 1)
            following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            return Period(id=text, type="Monthly", first_day=first, end_day=following)
    except ValueError:
        raise InvalidInput("invalid_period", f"'{text}' is not a real day, ISO week or month", field="period") from None
    raise InvalidInput(
        "invalid_period",
        f"'{text}' is not a DHIS2 period Spean reports: monthly YYYYMM (202612), weekly YYYYWn (2026W49) "
        "or daily YYYYMMDD (20261203)",
        field="period",
    )


__all__ = ["Period", "PeriodType", "parse"]
