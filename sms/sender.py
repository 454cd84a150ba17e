"""The seam every outgoing SMS passes through. The default writes to the log (development and
until the Twilio issue lands); the Twilio sender will implement the same protocol."""

from __future__ import annotations

from typing import Protocol

import structlog

log = structlog.get_logger("spean.sms")


class SmsSender(Protocol):
    async def send(self, to: str, body: str) -> None:
        """Send `body` to the E.164 number `to`; raise if the provider refused it."""


class LogSmsSender:
    """Writes each message to the log instead of sending it (the code is visible to operators)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, body: str) -> None:
        self.sent.append((to, body))
        del self.sent[:-100]  # keep the last few for inspection, never grow without bound
        log.info("sms_logged", to=to, body=body)
