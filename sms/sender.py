"""The seam every outgoing SMS passes through: the ledger's sender loop (sms.outbox) calls
`send` after the change that caused the message committed. The default writes to the log
(development, tests); `TwilioSmsSender` (sms.twilio) sends through Twilio.

A sender answers with the provider's message id, or raises `SmsRetryable` (the provider may
accept it later: 5xx, 429, network) or `SmsRejected` (it never will: an invalid number...).
"""

from __future__ import annotations

import uuid
from typing import Protocol

import structlog

log = structlog.get_logger("spean.sms")


class SmsRetryable(Exception):
    """Try again later; `retry_after_s` when the provider said how long to wait."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class SmsRejected(Exception):
    """The provider refused this message for good (e.g. Twilio 21211, an invalid number)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SmsSender(Protocol):
    async def send(self, to: str, body: str, *, key: str, status_callback: str | None) -> str:
        """Send `body` to the E.164 number `to`; return the provider's id for it.

        `key` is the ledger's idempotency key of this message (the same on every attempt)."""

    async def aclose(self) -> None:
        """Release connections (called when the worker stops)."""


class LogSmsSender:
    """Writes each message to the log instead of sending it (the code is visible to operators)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, body: str, *, key: str, status_callback: str | None) -> str:
        self.sent.append((to, body))
        del self.sent[:-100]  # keep the last few for inspection, never grow without bound
        log.info("sms_logged", to=to, body=body)
        # Unique across processes and restarts, as a provider's id is (the ledger keys on it).
        return f"log-{uuid.uuid4().hex}"

    async def aclose(self) -> None:
        return None
