"""Domain errors: a stable machine-readable `code` and a `kind` that each channel renders in its
own form (HTTP problem+json, an SMS reply, a WebSocket close code)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    INVALID = "invalid"  # the input is malformed or breaks a rule
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # the current state forbids it (double booking, wrong status)
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"  # a dependency is down; retrying later may work


class DomainError(Exception):
    kind: ErrorKind = ErrorKind.INVALID

    def __init__(self, code: str, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field
        self.extra = extra


class InvalidInput(DomainError):
    kind = ErrorKind.INVALID


class Unauthenticated(DomainError):
    kind = ErrorKind.UNAUTHENTICATED


class Forbidden(DomainError):
    kind = ErrorKind.FORBIDDEN


class NotFound(DomainError):
    kind = ErrorKind.NOT_FOUND


class Conflict(DomainError):
    kind = ErrorKind.CONFLICT


class RateLimited(DomainError):
    kind = ErrorKind.RATE_LIMITED

    def __init__(self, code: str, detail: str, *, retry_after_s: int) -> None:
        super().__init__(code, detail, retry_after=retry_after_s)
        self.retry_after_s = retry_after_s


class Unavailable(DomainError):
    """Not now: a dependency is away or the request lost a race it can win on a second try."""

    kind = ErrorKind.UNAVAILABLE

    def __init__(self, code: str, detail: str, *, retry_after_s: int = 1) -> None:
        super().__init__(code, detail, retry_after=retry_after_s)
        self.retry_after_s = retry_after_s
