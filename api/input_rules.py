"""Rules every value from outside obeys, whatever route or frame carries it.

PostgreSQL refuses NUL in text and cannot store instants outside its calendar or integers beyond
int64, and date arithmetic overflows at the edge of Python's calendar: such values are refused at
the door, naming the field, instead of failing deep inside as a 500. The checks walk decoded
values (builtins or msgspec Structs) without recursion, so no input can exhaust the stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import msgspec

__all__ = [
    "EARLIEST",
    "INT64_MAX",
    "INT64_MIN",
    "LATEST",
    "MAX_DEPTH",
    "calendar_problem",
    "instant_or_integer_problem",
    "is_json_media_type",
    "nul_field",
    "too_deep_field",
]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Instants and dates accepted anywhere: wide enough for any birth date or appointment, narrow
# enough that adding a duration can never leave the calendar.
EARLIEST = date(1900, 1, 1)
LATEST = date(2199, 12, 31)
# Nesting deeper than any request or frame of this API needs; deeper input is refused.
MAX_DEPTH = 32


def is_json_media_type(content_type: str) -> bool:
    """application/json or any application/*+json (e.g. application/fhir+json), in UTF-8."""
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if not (media == "application/json" or (media.startswith("application/") and media.endswith("+json"))):
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _children(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, msgspec.Struct):
        cls = type(value)
        for name, public in zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True):
            yield _join(path, public), getattr(value, name)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield _join(path, str(key)), key  # the key itself is a string that may carry NUL
            yield _join(path, str(key)), item
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield f"{path}[{index}]", item


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _walk(value: Any) -> Iterator[tuple[str, Any, int]]:
    """Every (path, value, depth) inside value, depth-first, without recursion."""
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    while stack:
        path, item, depth = stack.pop()
        yield path, item, depth
        if isinstance(item, msgspec.Struct | dict | list | tuple):
            stack.extend((p, v, depth + 1) for p, v in _children(item, path))


def too_deep_field(value: Any) -> str | None:
    """The path of the first container nested deeper than MAX_DEPTH."""
    for path, _, depth in _walk(value):
        if depth > MAX_DEPTH:
            return path or "body"
    return None


def nul_field(value: Any) -> str | None:
    """The path of the first string (value or key) holding U+0000."""
    for path, item, _ in _walk(value):
        if isinstance(item, str) and "\x00" in item:
            return path or "body"
    return None


def instant_or_integer_problem(value: Any) -> tuple[str, str, str] | None:
    """(code, path, reason) of the first integer beyond int64, instant without a UTC offset, or
    instant or date outside the supported calendar."""
    for path, item, _ in _walk(value):
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
            return "out_of_range", path or "body", "integers are 64-bit"
        if isinstance(item, datetime | date) and (reason := calendar_problem(item)):
            return reason[0], path or "body", reason[1]
    return None


def calendar_problem(moment: date) -> tuple[str, str] | None:
    """(code, reason) when an instant has no UTC offset or a date or instant is out of range."""
    if isinstance(moment, datetime) and moment.utcoffset() is None:
        return "timezone_required", "give instants with a UTC offset, e.g. 2026-12-01T02:00:00Z"
    # The wall-clock date: converting to UTC could itself overflow at the calendar's edge.
    day = moment.date() if isinstance(moment, datetime) else moment
    if not EARLIEST <= day <= LATEST:
        return "out_of_range", f"instants and dates are between {EARLIEST} and {LATEST}"
    return None
