"""Draining: what a server process does between SIGTERM and exit, so a rolling restart loses no
request and no call.

At SIGTERM the process first keeps serving for `drain_s` seconds while saying it is going: `/ready`
answers 503 (load balancers take it out of rotation) and every answer carries `Connection: close`
(clients and balancers stop reusing their connections to it). Only then does uvicorn's own
graceful shutdown run: listening sockets close, requests in flight finish, WebSocket peers get
close code 1012 (service restart) and reconnect through the balancer to another process, where
they resume their session (rooms live in Redis), and the lifespan stops the background loops,
each finishing the batch it holds. A second SIGTERM, or SIGINT (Ctrl+C), skips the pause.

The handler wraps the one uvicorn installs, in each worker process, from the app's start-up:
that works the same with one worker and with `--workers N`, whose supervisor passes SIGTERM on.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog

log = structlog.get_logger(__name__)

_draining = False  # SIGTERM received: saying so while still serving


def draining() -> bool:
    return _draining


def install(drain_s: float) -> Callable[[], None]:
    """Wrap the server's SIGTERM handler with the pause; returns what puts the old one back.
    Does nothing where no server handles SIGTERM (an app inside a test client)."""
    previous = signal.getsignal(signal.SIGTERM)
    if drain_s <= 0 or not callable(previous):
        return lambda: None
    loop = asyncio.get_running_loop()

    def on_term(signum: int, frame: FrameType | None) -> None:
        global _draining
        if draining():  # the second SIGTERM: stop now
            previous(signum, frame)
            return
        _draining = True
        log.info("draining", seconds=drain_s)
        loop.call_soon_threadsafe(loop.call_later, drain_s, _finish, previous, signum)

    signal.signal(signal.SIGTERM, on_term)

    def uninstall() -> None:
        if signal.getsignal(signal.SIGTERM) is on_term:
            signal.signal(signal.SIGTERM, previous)

    return uninstall


def _finish(previous: Callable[[int, FrameType | None], Any], signum: int) -> None:
    log.info("drained")
    previous(signum, None)
