"""Instants leave Spean in one form: UTC, written RFC 3339 with a `Z` (2026-12-01T02:00:00Z).

Whatever offset a client sent (a booking at 16:00+07:00) or a computation kept, every instant a
channel emits goes through here; a local wall-clock time is shown only in fields that say so
(`start_local`), next to the instant.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc(instant: datetime) -> datetime:
    """The same instant in UTC; a naive value is taken as UTC already (the database's zone)."""
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def text(instant: datetime) -> str:
    return utc(instant).isoformat().replace("+00:00", "Z")
