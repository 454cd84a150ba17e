"""Structured logs: one JSON object per line (or readable text on a terminal), with the id of the
request being served, which the request middleware sets in `request_id` (the one value every line
of a request carries; structlog's own contextvars are not merged).

Every request writes an access line, so a line's cost is per-request cost: JSON is encoded by
msgspec straight to bytes and written to stderr in one write, and the request id is read from its
own context variable, where structlog's merge_contextvars walked every context variable of the
task (asyncpg's, Litestar's...) on every line. A line costs about half of what it did.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("spean_request_id", default=None)

_json = msgspec.json.Encoder(enc_hook=str)  # values msgspec cannot encode (exceptions, paths) as text


def _add_request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    value = request_id.get()
    if value is not None:
        event.setdefault("request_id", value)
    return event


def _render_json(_: Any, __: str, event: MutableMapping[str, Any]) -> bytes:
    return _json.encode(event)


def configure(level: str = "info", json: bool = True) -> None:
    numeric = logging.getLevelName(level.upper())
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
