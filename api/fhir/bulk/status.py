"""Bulk Data status and files: poll (202 with X-Progress and Retry-After while the export runs,
200 with the manifest once done, an OperationOutcome if it failed), cancel (DELETE, 202), and
download each NDJSON file with the same token (requiresAccessToken is true). Only the export's
owner sees any of it; to anyone else, and once cancelled or expired, it is 404."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from email.utils import format_datetime
from typing import Any

from litestar import Controller, Request, Response, delete, get
from litestar.params import FromPath
from litestar.response import Stream

from api.deps import Caller, Config, Conn
from api.fhir.bulk.kickoff import NDJSON
from api.fhir.bundle import fhir
from api.fhir.clinical import instant
from api.fhir.errors import outcome
from api.transaction import NO_TRANSACTION
from domain.errors import NotFound
from domain.export import jobs
from domain.export.jobs import Job
from domain.principal import Principal
from infra.config import Settings
from infra.storage import BlobStore

# A file's name as file_url writes it: its index in the manifest. ASCII digits only, and few: a
# name such as "².ndjson" (str.isdigit) or thousands of digits is no file, not an int() error.
_FILE_NAME = re.compile(r"(0|[1-9][0-9]{0,5})\.ndjson", re.ASCII)


def file_url(settings: Settings, job_id: uuid.UUID, index: int) -> str:
    return f"{settings.public_base_url.rstrip('/')}/fhir/bulk/files/{job_id}/{index}.ndjson"


def manifest(settings: Settings, job: Job) -> dict[str, Any]:
    return {
        "transactionTime": instant(job.transaction_time),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": [
            {"type": f.type, "url": file_url(settings, job.id, i), "count": f.count} for i, f in enumerate(job.output)
        ],
        "error": [],
    }


class BulkStatusController(Controller):
    path = "/fhir/bulk"
    tags = ["fhir"]

    @get("/status/{job_id:uuid}", summary="Bulk export status: 202 while running, then the manifest")
    async def status(
        self, job_id: FromPath[uuid.UUID], conn: Conn, principal: Caller, settings: Config
    ) -> Response[Any]:
        job = await jobs.owned(conn, principal, job_id)
        if job.status in ("queued", "running"):
            progress = job.progress or ("queued" if job.status == "queued" else "starting")
            return Response(
                content=b"", status_code=202,
                headers={"X-Progress": progress[:100], "Retry-After": str(jobs.RETRY_AFTER_S)},
            )  # fmt: skip
        if job.status == "failed":
            return fhir(outcome(500, "export_failed", f"the export failed: {job.error}"), status_code=500)
        answer = Response(manifest(settings, job), media_type="application/json")
        if job.expires_at is not None:
            answer.headers["Expires"] = format_datetime(job.expires_at, usegmt=True)
        return answer

    @delete("/status/{job_id:uuid}", summary="Cancel a bulk export (or drop its files early)", status_code=202)
    async def cancel(self, job_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Response[Any]:
        await jobs.cancel(conn, principal, job_id)
        return fhir(
            {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational",
                                                              "diagnostics": f"export {job_id} cancelled"}]},
            status_code=202,
        )  # fmt: skip

    # Outside the request transaction (which holds an answer back until it commits): a file of
    # an export can be large, and goes out as it is read.
    @get("/files/{job_id:uuid}/{name:str}", summary="One NDJSON file of a completed bulk export",
         opt=NO_TRANSACTION)  # fmt: skip
    async def file(
        self, job_id: FromPath[uuid.UUID], name: FromPath[str], request: Request[Any, Any, Any]
    ) -> Response[Any]:  # fmt: skip
        principal: Principal = request.scope["user"]  # the caller dependencies chain through the transaction
        async with request.app.state.pool.acquire() as conn:
            job = await jobs.owned(conn, principal, job_id)
        named = _FILE_NAME.fullmatch(name)
        if job.status != "completed" or named is None or int(named[1]) >= len(job.output):
            raise NotFound("export_file_not_found", "no such file in this export")
        blobs: BlobStore = request.app.state.blobs
        pieces = await blobs.chunks(job.output[int(named[1])].key)
        if pieces is None:
            raise NotFound("export_file_not_found", "this file is no longer stored")
        return Stream(_relay(pieces), media_type=NDJSON[0])


async def _relay(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for piece in pieces:
        yield piece
