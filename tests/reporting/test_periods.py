from __future__ import annotations

from datetime import date

import pytest

from domain.errors import InvalidInput
from domain.reporting.periods import parse


@pytest.mark.parametrize(
    ("text", "kind", "first", "end"),
    [
        ("202612", "Monthly", date(2026, 12, 1), date(2027, 1, 1)),
        ("202602", "Monthly", date(2026, 2, 1), date(2026, 3, 1)),
        ("2026W49", "Weekly", date(2026, 11, 30), date(2026, 12, 7)),
        ("2026W01", "Weekly", date(2025, 12, 29), date(2026, 1, 5)),
        ("20261203", "Daily", date(2026, 12, 3), date(2026, 12, 4)),
    ],
)
def test_dhis2_periods_are_spans_of_local_days(text: str, kind: str, first: date, end: date) -> None:
    period = parse(text)
    assert (period.type, period.first_day, period.end_day) == (kind, first, end)


def test_weeks_are_written_as_dhis2_writes_them() -> None:
    assert parse("2026W01").id == "2026W1"


@pytest.mark.parametrize("text", ["202613", "2026W54", "20260230", "2026Q4", "2026", "", "2026-12"])
def test_other_periods_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse(text)
    assert refused.value.code == "invalid_period"
