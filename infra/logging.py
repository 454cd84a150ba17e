"""Structured logs: one JSON object per line (or readable text on a terminal), with the id of the
request being served, which the request middleware sets in `request_id` (the one value every line
of a request carries; structlog's own contextvars are not merged).

Every request writes an access line, so a line's cost is per-request cost: JSON is encoded by
msgspec straight to bytes and written to stderr in one write, and the request id is read from its
own context variable, where structlog's merge_contextvars walked every context variable of the
task (asyncpg's, Litestar's...) on every line. A line costs about half of what it did. The access
line itself (`access`) is written straight, without structlog's chain of processors: the same
bytes (tests/infra/test_logging.py), at about a third of the CPU.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any, BinaryIO

import msgspec
import structlog

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("spean_request_id", default=None)

_json = msgspec.json.Encoder(enc_hook=str)  # values msgspec cannot encode (exceptions, paths) as text
_access_log = structlog.get_logger("spean.access")
# Where access lines are written straight (JSON lines at level info or below), else None: they
# go through structlog (text on a terminal, or filtered out by the level).
_access_out: BinaryIO | None = None


def access(method: str, route: str, status: int, ms: float) -> None:
    """The access line of one request: what `log.info("request", ...)` writes, keys in its order."""
    out = _access_out
    if out is None:
        _access_log.info("request", method=method, route=route, status=status, ms=ms)
        return
    line: dict[str, Any] = {"method": method, "route": route, "status": status, "ms": ms, "event": "request"}
    if (value := request_id.get()) is not None:
        line["request_id"] = value
    line["level"] = "info"
    line["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    out.write(_json.encode(line) + b"\n")
    out.flush()


def _add_request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    value = request_id.get()
    if value is not None:
        event.setdefault("request_id", value)
    return event


def _render_json(_: Any, __: str, event: MutableMapping[str, Any]) -> bytes:
    return _json.encode(event)


def configure(level: str = "info", json: bool = True) -> None:
    global _access_out  # set once per process, as structlog's own configuration
    numeric = logging.getLevelName(level.upper())
    _access_out = sys.stderr.buffer if json and numeric <= logging.INFO else None
    shared: list[structlog.typing.Processor] = [
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json:
        structlog.configure(
            processors=[*shared, structlog.processors.format_exc_info, _render_json],
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
            cache_logger_on_first_use=True,
        )
    else:
        structlog.configure(
            processors=[*shared, structlog.processors.format_exc_info, structlog.dev.ConsoleRenderer(colors=False)],
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
            cache_logger_on_first_use=True,
        )
    # Libraries using stdlib logging (uvicorn, asyncpg) go through the same renderer, as text.
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
