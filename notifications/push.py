"""The seam every push passes through: one batch in, one outcome per push out.

The FCM sender (notifications.fcm) speaks to Firebase through its SDK; the log sender writes
pushes to the log (development, and wherever no credentials are set).
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec
import structlog

log = structlog.get_logger("spean.push")

Priority = Literal["high", "normal", "silent"]


class Push(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    title: str
    body: str
    data: dict[str, str]  # always carries "nid": the app shows a notification id once
    priority: Priority  # high: a call waiting (short TTL); silent: data only, a background sync
    collapse_key: str | None = None  # a newer push with the same key replaces an unseen older one
    ttl_s: int | None = None


Verdict = Literal["sent", "retry", "dead_token", "failed"]


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    verdict: Verdict
    error: str | None = None
    retry_after_s: float | None = None  # the provider's Retry-After, when it sent one


class PushSender(Protocol):
    async def send(self, pushes: list[Push]) -> list[Outcome]:
        """Send each push; one outcome per push, in order. Never raises for a refused push."""

    async def aclose(self) -> None:
        """Release connections; the sender is not used after."""


class LogPushSender:
    """Writes each push to the log instead of sending it."""

    async def send(self, pushes: list[Push]) -> list[Outcome]:
        for p in pushes:
            log.info("push_logged", token=p.token[-8:], title=p.title, body=p.body, priority=p.priority, data=p.data)
        return [Outcome(verdict="sent") for _ in pushes]

    async def aclose(self) -> None:
        pass
