"""The access line written straight (infra.logging.access) is the line structlog writes."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
import pytest
import structlog

from infra import logging as logs


class _Stderr:
    """sys.stderr's shape as infra.logging uses it, over a buffer kept for the test."""

    def __init__(self, raw: io.BytesIO) -> None:
        self.buffer = raw

    def write(self, text: str) -> int:
        return self.buffer.write(text.encode())

    def flush(self) -> None:
        pass


@contextmanager
def _stderr() -> Iterator[io.BytesIO]:
    """Inside the test: pytest's output capture sets sys.stderr again between fixture and test."""
    raw, kept = io.BytesIO(), sys.stderr
    sys.stderr = _Stderr(raw)
    try:
        yield raw
    finally:
        sys.stderr = kept
        logs.configure("warning", json=False)  # as tests/conftest.py leaves it


def _lines(raw: io.BytesIO) -> list[dict[str, object]]:
    return [msgspec.json.decode(line) for line in raw.getvalue().splitlines()]


@pytest.mark.parametrize("request_id", ["7f3a9c0e2b5d4e6f8a1b2c3d4e5f6a7b", None])
def test_the_access_line_is_the_one_structlog_writes(request_id: str | None) -> None:
    with _stderr() as stderr:
        logs.configure("info", json=True)
        token = logs.request_id.set(request_id)
        try:
            structlog.get_logger("spean.access").info("request", method="POST", route="/v1/x", status=201, ms=1.25)
            logs.access("POST", "/v1/x", 201, 1.25)
        finally:
            logs.request_id.reset(token)
    through_structlog, straight = _lines(stderr)
    assert list(straight) == list(through_structlog)  # the same keys in the same order
    assert {**straight, "timestamp": None} == {**through_structlog, "timestamp": None}
    assert str(straight["timestamp"]).endswith("Z")


def test_above_info_no_access_line_is_written() -> None:
    with _stderr() as stderr:
        logs.configure("warning", json=True)
        logs.access("GET", "/v1/x", 200, 0.5)
    assert stderr.getvalue() == b""
