"""Rules every value from outside obeys, whatever route or frame carries it.

PostgreSQL refuses NUL in text and cannot store instants outside its calendar or integers beyond
int64, and date arithmetic overflows at the edge of Python's calendar: such values are refused at
the door, naming the field, instead of failing deep inside as a 500. The checks walk decoded
values (builtins or msgspec Structs) without recursion, so no input can exhaust the stack.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec

__all__ = [
    "EARLIEST",
    "INT64_MAX",
    "INT64_MIN",
    "LATEST",
    "MAX_DEPTH",
    "calendar_problem",
    "decoded_problem",
    "is_json_media_type",
    "nul_field",
    "utc_instants",
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


# A place in a value: (the parent's place, the key or index here); the root is None. The path
# text is only built when a problem is found, so walking a valid request stays cheap.
Place = tuple[Any, "str | int"] | None
_LEAVES = frozenset({str, float, bool, type(None), uuid.UUID, bytes})  # nothing inside to check
_untyped = msgspec.json.Decoder()
_ZERO = timedelta(0)


def _path(place: Place) -> str:
    keys: list[str | int] = []
    while place is not None:
        place, key = place
        keys.append(key)
    text = ""
    for key in reversed(keys):
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text or "body"


def _walk(value: Any) -> Iterator[tuple[Any, int, Place]]:
    """Every (value, depth, place) inside value, depth-first, without recursion. Dict keys are
    visited too: a key is a string that may carry NUL. Dispatches on the exact type: isinstance
    against msgspec.Struct costs a metaclass check per value."""
    stack: list[tuple[Any, int, Place]] = [(value, 0, None)]
    while stack:
        item, depth, place = stack.pop()
        yield item, depth, place
        kind = type(item)
        if kind in _LEAVES:
            continue
        depth += 1
        if (fields := getattr(kind, "__struct_fields__", None)) is not None:
            for name, public in zip(fields, kind.__struct_encode_fields__, strict=True):
                child = getattr(item, name)
                if type(child) not in _LEAVES:
                    stack.append((child, depth, (place, public)))
        elif kind is dict:
            for key, child in item.items():
                stack.append((key, depth, (place, str(key))))
                stack.append((child, depth, (place, str(key))))
        elif kind is list or kind is tuple:
            stack.extend((child, depth, (place, index)) for index, child in enumerate(item))


def nul_field(document: bytes | str) -> str | None:
    """The path of the first string (value or key) of a JSON document holding U+0000.

    In valid JSON a NUL can only be written as the escape \\u0000, so documents without it are
    passed at the cost of a substring search; the others are decoded untyped and walked.
    Raises what msgspec.json.decode raises (the caller decodes the document anyway)."""
    escaped = b"\\u0000" in document if isinstance(document, bytes) else "\\u0000" in document
    if not escaped:
        return None
    for item, _, place in _walk(_untyped.decode(document)):
        if isinstance(item, str) and "\x00" in item:
            return _path(place)
    return None


def decoded_problem(value: Any) -> tuple[str, str, str] | None:
    """(code, path, reason) of the first container nested deeper than MAX_DEPTH, integer beyond
    int64, instant without a UTC offset, or instant or date outside the supported calendar."""
    for item, depth, place in _walk(value):
        if depth > MAX_DEPTH:
            return "nesting_too_deep", _path(place), "nested too deeply"
        if isinstance(item, int) and not isinstance(item, bool) and not INT64_MIN <= item <= INT64_MAX:
            return "out_of_range", _path(place), "integers are 64-bit"
        if isinstance(item, date) and (reason := calendar_problem(item)):  # datetime is a date too
            return reason[0], _path(place), reason[1]
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


def utc_instants(value: Any) -> Any:
    """value with every instant inside it moved to UTC, in place (Structs, dicts and lists), so an
    offset a client wrote (16:00+07:00) never reaches a handler, the database or an answer: answers
    are encoded as they are (api.negotiation), trusting every instant in them to be UTC already.
    Runs after decoded_problem, so no instant here is naive or outside the calendar."""
    if type(value) is datetime:
        return _utc(value)
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _LEAVES:
            continue
        if (fields := getattr(kind, "__struct_fields__", None)) is not None:
            for name in fields:
                child = getattr(item, name)
                if type(child) is datetime:
                    msgspec.structs.force_setattr(item, name, _utc(child))  # frozen Structs too
                elif type(child) not in _LEAVES:
                    stack.append(child)
        elif kind is dict:
            for key, child in item.items():
                if type(child) is datetime:
                    item[key] = _utc(child)
                else:
                    stack.append(child)
        elif kind is list:
            for index, child in enumerate(item):
                if type(child) is datetime:
                    item[index] = _utc(child)
                else:
                    stack.append(child)
        elif kind is tuple:
            # Immutable: an instant right inside one would stay as given. No request type has one,
            # and the test-mode check (api.negotiation) fails any answer that would carry it.
            stack.extend(item)
    return value


def _utc(instant: datetime) -> datetime:
    return instant if instant.utcoffset() == _ZERO else instant.astimezone(UTC)
