"""The search value rules on their own: a date's span at each precision, token escapes, cursors
that only this server writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.errors import InputRejected
from api.fhir.params import OBSERVATION, PATIENT
from api.fhir.query import date_range, decode_cursor, encode_cursor, parse
from domain.errors import InvalidInput
from domain.search.engine import DateIs, TokenIs


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


@pytest.mark.parametrize(
    ("value", "start", "end"),
    [
        ("2026", at(2026, 1, 1), at(2027, 1, 1)),
        ("2026-12", at(2026, 12, 1), at(2027, 1, 1)),
        ("2026-02", at(2026, 2, 1), at(2026, 3, 1)),
        ("2026-02-28", at(2026, 2, 28), at(2026, 3, 1)),
        ("2026-03-10T12:30", at(2026, 3, 10, 12, 30), at(2026, 3, 10, 12, 31)),
        ("2026-03-10T12:30:05Z", at(2026, 3, 10, 12, 30, 5), at(2026, 3, 10, 12, 30, 6)),
        ("2026-03-10T12:30:05.5Z", at(2026, 3, 10, 12, 30, 5, 500000), at(2026, 3, 10, 12, 30, 5, 600000)),
        ("2026-03-10T19:30+07:00", at(2026, 3, 10, 12, 30), at(2026, 3, 10, 12, 31)),
    ],
)
def test_a_date_is_the_span_of_its_precision(value: str, start: datetime, end: datetime) -> None:
    assert date_range("date", value) == (start, end)


@pytest.mark.parametrize("value", ["2026-02-30", "26", "2026-1", "2026-01-01T12", "2026-01-01T24:00Z", "1899", "2200"])
def test_impossible_dates_are_refused(value: str) -> None:
    with pytest.raises(InputRejected):
        date_range("date", value)


def test_values_split_on_unescaped_commas_and_bars() -> None:
    q = parse(OBSERVATION, [("code", r"a\,b|c\|d,e"), ("date", "le2026,2027")], strict_handling=True, region="KH",
              base="http://x")  # fmt: skip
    codes, dates = q.criteria
    assert [(c.system, c.code) for c in codes if isinstance(c, TokenIs)] == [("a,b", "c|d"), (None, "e")]
    assert [(c.comparator, c.start.year) for c in dates if isinstance(c, DateIs)] == [("le", 2026), ("eq", 2027)]


def test_cursors_are_bound_to_their_order() -> None:
    q = parse(PATIENT, [("_sort", "-birthdate")], strict_handling=True, region="KH", base="http://x")
    keyset = (at(1980, 1, 1), "7b4ce1a5-50a9-4f66-9b41-6f1d2b7f2f4e")
    cursor = encode_cursor(q.order, keyset, backwards=True)
    values, backwards, phase = decode_cursor(cursor, q.order)
    assert (values[0], str(values[1]), backwards, phase) == (*keyset, True, 0)
    with pytest.raises(InvalidInput):
        decode_cursor(cursor, list(PATIENT.order))  # the same page token under another _sort
    for forged in ("", "e30", "bm90IGpzb24", "W10"):
        with pytest.raises(InvalidInput):
            decode_cursor(forged, q.order)
