"""DHIS2's Web API, the part Spean speaks: POST /api/dataValueSets with a JSON data value set,
and its answer read into one ImportSummary.

DHIS2 2.38 and later wrap the summary in a WebMessage ({"httpStatus": "Conflict",
"httpStatusCode": 409, "status": "WARNING", "response": {"responseType": "ImportSummary", ...}})
and answer 409 when any value conflicts; older servers answer 200 with the bare ImportSummary.
Both are read. `importStrategy=CREATE_AND_UPDATE` makes a second push of a period update the
values the first created, so re-running a report is safe.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import httpx
import msgspec

from infra.config import Settings

FailureCode = Literal["not_configured", "unauthorized", "forbidden", "unreachable", "bad_response"]


class Conflict(msgspec.Struct, frozen=True, kw_only=True):
    object: str | None = None  # the uid (or value) DHIS2 objects to
    value: str = ""  # its explanation
    error_code: str | None = None


class ImportSummary(msgspec.Struct, frozen=True, kw_only=True):
    status: str  # SUCCESS, WARNING or ERROR
    http_status: int
    imported: int = 0
    updated: int = 0
    ignored: int = 0
    deleted: int = 0
    conflicts: list[Conflict] = []
    description: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS" and not self.conflicts


class Dhis2Failure(Exception):
    """No import summary: the server refused us, could not be reached, or answered nonsense."""

    def __init__(self, code: FailureCode, detail: str, http_status: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.http_status = http_status


def authorization(settings: Settings) -> str:
    """The Authorization header: a personal access token if configured, else basic auth."""
    if settings.dhis2_token:
        return f"ApiToken {settings.dhis2_token}"
    if settings.dhis2_username and settings.dhis2_password:
        pair = f"{settings.dhis2_username}:{settings.dhis2_password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    raise Dhis2Failure("not_configured", "set DHIS2_TOKEN, or DHIS2_USERNAME and DHIS2_PASSWORD")


async def post_data_value_set(settings: Settings, body: bytes, *, dry_run: bool = False) -> ImportSummary:
    """Send one data value set; `dry_run`: DHIS2 checks it all and stores nothing (dryRun=true)."""
    if not settings.dhis2_base_url:
        raise Dhis2Failure("not_configured", "set DHIS2_BASE_URL to the DHIS2 server (e.g. https://hmis.example.org)")
    url = settings.dhis2_base_url.rstrip("/") + "/api/dataValueSets"
    params = {"importStrategy": "CREATE_AND_UPDATE", "dryRun": "true" if dry_run else "false"}
    headers = {
        "Authorization": authorization(settings),
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    try:
        async with httpx.AsyncClient(timeout=settings.dhis2_timeout_s, follow_redirects=False) as client:
            response = await client.post(url, params=params, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise Dhis2Failure("unreachable", f"DHIS2 at {settings.dhis2_base_url} did not answer: {exc!r}") from None
    return read_answer(response.status_code, response.content)


def read_answer(status_code: int, content: bytes) -> ImportSummary:
    """The import summary in DHIS2's answer, or Dhis2Failure saying why there is none."""
    try:
        answer = msgspec.json.decode(content) if content else {}
    except msgspec.DecodeError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    message = str(answer.get("message") or answer.get("description") or "").strip()
    if status_code == 401:
        raise Dhis2Failure("unauthorized", f"DHIS2 refused the credentials (401) {message}".strip(), status_code)
    if status_code == 403:
        raise Dhis2Failure("forbidden", f"DHIS2 user may not import data values (403) {message}".strip(), status_code)
    inner = answer.get("response")
    summary: dict[str, Any] = inner if isinstance(inner, dict) else answer
    if summary.get("responseType", "ImportSummary") != "ImportSummary" or "status" not in summary:
        raise Dhis2Failure(
            "bad_response", f"DHIS2 answered {status_code} without an import summary {message}".strip(), status_code
        )
    return _summary(summary, status_code)


def _summary(raw: dict[str, Any], status_code: int) -> ImportSummary:
    count = raw.get("importCount") or {}
    conflicts = [
        Conflict(object=_text(c.get("object")), value=_text(c.get("value")) or "", error_code=_text(c.get("errorCode")))
        for c in raw.get("conflicts") or []
        if isinstance(c, dict)
    ]
    return ImportSummary(
        status=str(raw["status"]),
        http_status=status_code,
        imported=int(count.get("imported", 0)),
        updated=int(count.get("updated", 0)),
        ignored=int(count.get("ignored", 0)),
        deleted=int(count.get("deleted", 0)),
        conflicts=conflicts,
        description=_text(raw.get("description")),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


__all__ = ["Conflict", "Dhis2Failure", "ImportSummary", "authorization", "post_data_value_set", "read_answer"]
