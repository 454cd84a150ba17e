"""Bulk Data kick-off (FHIR Bulk Data Access IG v2): `GET [base]/$export`,
`[base]/Patient/$export` and `[base]/Group/[id]/$export` (a Group is a facility's patients).

The request must say `Prefer: respond-async`; it takes `_type`, `_since` and `_outputFormat`
(NDJSON only). The answer is 202 with the status URL in Content-Location; the export runs in a
worker (api.fhir.bulk.runner). Other parameters of the IG (`_elements`, `patient`,
`_typeFilter`, `includeAssociatedData`) are not supported: refused under
`Prefer: handling=strict`, otherwise ignored, as FHIR's rule for unknown parameters says."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get
from litestar.params import FromPath

from api.deps import Caller, Config, Conn
from api.errors import InputRejected
from api.fhir.bulk import types as export_types
from api.fhir.bundle import fhir
from api.fhir.history import since_instant
from api.fhir.query import strict
from domain import facilities
from domain.export import jobs
from domain.export.jobs import Level
from domain.principal import Principal
from infra.config import Settings

NDJSON = ("application/fhir+ndjson", "application/ndjson", "ndjson")
_ACCEPTED = ("application/fhir+json", "application/json", "*/*")
_KNOWN = {"_type", "_since", "_outputFormat"}


def status_url(settings: Settings, job_id: uuid.UUID) -> str:
    return f"{settings.public_base_url.rstrip('/')}/fhir/bulk/status/{job_id}"


def _prefers_async(prefer: str | None) -> bool:
    return prefer is not None and any(p.strip().lower() == "respond-async" for p in prefer.replace(";", ",").split(","))


async def kick_off(
    request: Request[Any, Any, Any], conn: Conn, principal: Principal, settings: Settings, level: Level,
    group_id: uuid.UUID | None,
) -> Response[Any]:  # fmt: skip
    prefer = request.headers.get("prefer")
    if not _prefers_async(prefer):
        raise InputRejected("respond_async_required", "Prefer", "an export runs asynchronously: send "
                            "'Prefer: respond-async'", "header")  # fmt: skip
    accept = request.headers.get("accept")
    if accept and not any(a.split(";")[0].strip() in _ACCEPTED for a in accept.split(",")):
        raise InputRejected("not_acceptable", "Accept", "a kick-off answers application/fhir+json", "header")
    params: dict[str, str] = {}
    for name, value in request.query_params.items():
        if name in params:
            raise InputRejected("repeated_parameter", name, "give it once (comma-separate the values)", "query")
        if name not in _KNOWN:
            if strict(prefer):
                raise InputRejected("unsupported_parameter", name, "$export takes _type, _since, _outputFormat here",
                                    "query")  # fmt: skip
            continue
        params[name] = value
    output_format = params.get("_outputFormat")
    if output_format is not None and output_format not in NDJSON:
        raise InputRejected("unsupported_output_format", "_outputFormat", "only application/fhir+ndjson", "query")
    since = since_instant(params.get("_since"))
    chosen = export_types.chosen(params.get("_type"), level, export_types.allowed(principal, level))
    if group_id is not None:
        await facilities.get(conn, group_id)  # 404 facility_not_found for an unknown Group
    query = urlencode(params)
    job = await jobs.kick_off(
        conn, principal, level=level, group_id=group_id, types=chosen, since=since,
        request_url=f"{settings.public_base_url.rstrip('/')}{request.url.path}" + (f"?{query}" if query else ""),
        max_active=settings.bulk_max_active,
    )  # fmt: skip
    accepted = fhir(
        {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational",
                                                          "diagnostics": f"export {job.id} queued"}]},
        status_code=202,
    )  # fmt: skip
    accepted.headers["Content-Location"] = status_url(settings, job.id)
    return accepted


class BulkKickOffController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    @get("/$export", summary="Bulk export of the whole system (async: Prefer: respond-async)", status_code=202)
    async def system(
        self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, settings: Config
    ) -> Response[Any]:
        return await kick_off(request, conn, principal, settings, "system", None)

    @get("/Patient/$export", summary="Bulk export of every patient's data", status_code=202)
    async def patients(
        self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, settings: Config
    ) -> Response[Any]:
        return await kick_off(request, conn, principal, settings, "patient", None)

    @get("/Group/{group_id:uuid}/$export", summary="Bulk export of a facility's patients (Group = facility)",
         status_code=202)  # fmt: skip
    async def group(
        self, group_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], conn: Conn, principal: Caller,
        settings: Config,
    ) -> Response[Any]:  # fmt: skip
        return await kick_off(request, conn, principal, settings, "group", group_id)
