"""The national-prescription seam: every version of a prescription leaves Spean through one
`PrescriptionExporter`, chosen by SPEAN_PRESCRIPTION_EXPORTER.

- `fhir` (default): POST the MedicationRequest (with its code, the prescriber's licence and the
  facility's code: api.fhir.clinical) to `{SPEAN_PRESCRIPTION_EXPORT_URL}/MedicationRequest`,
  as FHIR's create interaction; any 2xx is accepted.
- `none`: nothing leaves; versions stay queued (e.g. until the national platform is ready).

A country whose platform speaks something else adds an exporter here and names it in the
setting. The queue is the `prescription_exports` table, written in the transaction that wrote
the version (domain.prescriptions), so a prescription that committed is exported at least once:
`drain` claims one row at a time (SKIP LOCKED: several workers share the queue), sends it, and
marks it sent, or schedules a retry with exponential backoff, or, after a refusal that another
try will not change (4xx other than 408/429) or too many attempts, marks it failed.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Protocol

import httpx
import msgspec
import structlog

from api.fhir.clinical import to_fhir
from api.fhir_text import fhir_strings
from domain.record import store
from infra.config import Settings
from infra.db import Pool

log = structlog.get_logger("spean.prescriptions")
FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=6)


class ExportRefused(Exception):
    """The platform said no. `final`: another attempt will not change its answer."""

    def __init__(self, detail: str, *, final: bool) -> None:
        super().__init__(detail)
        self.final = final


class PrescriptionExporter(Protocol):
    async def export(self, medication_request: dict[str, Any]) -> None:
        """Deliver one version, or raise ExportRefused (or an httpx.HTTPError: retried)."""

    async def aclose(self) -> None: ...


class FhirMedicationRequestExporter:
    def __init__(self, base_url: str, token: str = "", *, timeout_s: float = 10.0) -> None:
        headers = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._url = base_url.rstrip("/") + "/MedicationRequest"
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout_s)

    async def export(self, medication_request: dict[str, Any]) -> None:
        response = await self._client.post(self._url, content=fhir_strings(msgspec.json.encode(medication_request)))
        if response.is_success:
            return
        final = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        raise ExportRefused(f"HTTP {response.status_code}: {response.text[:300]}", final=final)

    async def aclose(self) -> None:
        await self._client.aclose()


def exporter_for(settings: Settings) -> PrescriptionExporter | None:
    """The configured exporter, or None when nothing is to be sent."""
    if settings.prescription_exporter == "none" or not settings.prescription_export_url:
        return None
    return FhirMedicationRequestExporter(settings.prescription_export_url, settings.prescription_export_token)


def _backoff(attempts: int) -> timedelta:
    delay: timedelta = FIRST_RETRY * 2 ** max(attempts - 1, 0)
    return min(delay, LAST_RETRY)


async def export_one(pool: Pool, exporter: PrescriptionExporter, *, max_attempts: int) -> bool:
    """Send the oldest due version; False if none is due."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT id, code, entry_id, version, attempts FROM prescription_exports
               WHERE sent_at IS NULL AND failed_at IS NULL AND available_at <= now()
               ORDER BY available_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"""
        )
        if row is None:
            return False
        version = next(v for v in await store.versions(conn, row["entry_id"]) if v.version == row["version"])
        try:
            await exporter.export(to_fhir(version))
        except (ExportRefused, httpx.HTTPError) as exc:
            attempts = row["attempts"] + 1
            final = (isinstance(exc, ExportRefused) and exc.final) or attempts >= max_attempts
            log.warning("prescription_export_failed", code=row["code"], version=row["version"], attempts=attempts,
                        final=final, error=str(exc)[:300])  # fmt: skip
            await conn.execute(
                """UPDATE prescription_exports SET attempts = $2, last_error = $3,
                          available_at = now() + $4::interval, failed_at = CASE WHEN $5 THEN now() END
                   WHERE id = $1""",
                row["id"], attempts, str(exc)[:1000], _backoff(attempts), final,
            )  # fmt: skip
            return True
        await conn.execute(
            "UPDATE prescription_exports SET attempts = attempts + 1, sent_at = now() WHERE id = $1", row["id"]
        )
        log.info("prescription_exported", code=row["code"], version=row["version"])
        return True


async def drain(
    pool: Pool, exporter: PrescriptionExporter, *, max_attempts: int, stop: asyncio.Event | None = None,
    poll_s: float = 2.0,
) -> int:  # fmt: skip
    """Send what is due; with `stop`, keep polling until it is set. Returns how many were handled."""
    handled = 0
    while True:
        while await export_one(pool, exporter, max_attempts=max_attempts):
            handled += 1
        if stop is None:
            return handled
        try:
            await asyncio.wait_for(stop.wait(), poll_s)
            return handled
        except TimeoutError:
            continue
