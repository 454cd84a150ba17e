"""Runs bulk exports: claims a queued job (domain.export.jobs, with a lease), streams its rows
from one snapshot (domain.export.rows), builds each resource with the read path's own functions,
writes NDJSON files into the blob store, then completes the job and audits it in one transaction.

It runs in `spean worker` (and in the API process in development). A worker that dies mid-export
leaves its lease to run out; another worker then starts the job afresh (the half-written files
were never recorded). Between batches the lease is renewed, which is also where a cancellation
is noticed. Expired exports are swept here too: their rows deleted, then their files, unless the
same bytes are still another export's file or an attachment (the store is content-addressed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import structlog

from api.fhir import admin
from api.fhir.clinical import KIND_OF, Resource, to_fhir
from api.fhir_text import fhir_strings
from domain.export import audit, jobs, rows
from domain.export.jobs import Job, OutputFile
from infra.config import Settings
from infra.db import Connection, Pool
from infra.storage import BlobStore

log = structlog.get_logger("spean.bulk")
LINES_PER_FILE = 100_000  # a client downloads files in parallel; none grows without bound


class Cancelled(Exception):
    """The job was cancelled, or its lease lost to another worker: stop, record nothing."""


class ExportRunner:
    def __init__(self, pool: Pool, blobs: BlobStore, settings: Settings, *, poll_s: float = 1.0, lease_s: int = 60):
        self._pool = pool
        self._blobs = blobs
        self._settings = settings
        self._poll_s = poll_s
        self._lease_s = lease_s
        self._encode = msgspec.json.Encoder().encode

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
                worked = await self.run_once()
            except Exception:  # a database outage: keep the loop, try again after a pause
                log.exception("bulk_export_loop_failed")
                worked = False
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_s)

    async def run_once(self) -> bool:
        """Claim and run one job; False if none was waiting."""
        async with self._pool.acquire() as conn:
            job = await jobs.claim(conn, self._lease_s)
        if job is None:
            return False
        try:
            await self._export(job)
        except Cancelled:
            log.info("bulk_export_stopped", job=str(job.id))
        except Exception as exc:
            log.exception("bulk_export_failed", job=str(job.id))
            async with self._pool.acquire() as conn:
                await jobs.fail(
                    conn, job.id, job.attempts, f"{type(exc).__name__}: {exc}", self._settings.bulk_expiry_s
                )
        return True

    async def sweep(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            gone = await jobs.expired(conn)
            keys = {f.key for job in gone for f in job.output}
            orphans = [k for k in keys if not await jobs.still_referenced(conn, k)]
        for key in orphans:
            await self._blobs.delete(key)
        return len(gone)

    async def _export(self, job: Job) -> None:
        written: list[OutputFile] = []
        try:
            async with (
                self._pool.acquire() as snapshot,
                snapshot.transaction(isolation="repeatable_read", readonly=True),
            ):
                moment = await snapshot.fetchval("SELECT now()")
                job = msgspec.structs.replace(job, transaction_time=moment)
                for resource_type in job.types:
                    written += await self._write_type(snapshot, job, resource_type)
            kinds = [KIND_OF[t] for t in job.types if t in KIND_OF]
            async with self._pool.acquire() as conn, conn.transaction():
                if not await jobs.complete(conn, job.id, job.attempts, moment, written, self._settings.bulk_expiry_s):
                    raise Cancelled
                await audit.record_export(conn, job, written, kinds)
        except BaseException:
            await self._forget(written)
            raise
        log.info("bulk_export_completed", job=str(job.id), files=len(written), resources=sum(f.count for f in written))

    async def _forget(self, files: list[OutputFile]) -> None:
        async with self._pool.acquire() as conn:
            orphans = [f.key for f in files if not await jobs.still_referenced(conn, f.key)]
        for key in orphans:
            await self._blobs.delete(key)

    def _batches(self, conn: Connection, job: Job, resource_type: str) -> tuple[AsyncIterator[list[Any]],
                                                                              Callable[[Any], Resource]]:  # fmt: skip
        group = job.group_id
        if resource_type == "Patient":
            return rows.patient_rows(conn, group, job.since), admin.patient
        if resource_type == "Organization":
            return rows.facility_rows(conn, job.since), admin.organization
        return rows.entry_rows(conn, KIND_OF[resource_type], group, job.since), to_fhir

    async def _write_type(self, conn: Connection, job: Job, resource_type: str) -> list[OutputFile]:
        files: list[OutputFile] = []
        writer, count, total = self._blobs.writer(), 0, 0
        batches, build = self._batches(conn, job, resource_type)
        try:
            async for batch in batches:
                await writer.write(b"".join(fhir_strings(self._encode(build(row))) + b"\n" for row in batch))
                count += len(batch)
                total += len(batch)
                if count >= LINES_PER_FILE:
                    files.append(OutputFile(resource_type, await writer.close(), count))
                    writer, count = self._blobs.writer(), 0
                await self._renew(job, f"{resource_type}: {total} exported")
        except BaseException:
            await writer.abort()
            raise
        if count:
            files.append(OutputFile(resource_type, await writer.close(), count))
        else:
            await writer.abort()  # the IG: no file for a type with no resources
        return files

    async def _renew(self, job: Job, progress: str) -> None:
        async with self._pool.acquire() as conn:
            if not await jobs.renew(conn, job.id, job.attempts, self._lease_s, progress):
                raise Cancelled
