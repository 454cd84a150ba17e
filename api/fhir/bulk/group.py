"""Group: one per facility, its members the patients whose home facility it is. It exists so a
national platform can export one facility's patients (`Group/[id]/$export`, the Bulk Data IG's
Group level) and find the ids to ask for. Read and searched by backend clients whose scopes
cover Group and by system administrators; it names the facility and counts its patients, it
lists no patient."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath

from api.deps import Caller, Config, Conn
from api.errors import InputRejected
from api.fhir.bundle import bundle, fhir
from api.fhir.clinical import Resource, instant, ref
from api.fhir.query import strict
from domain import facilities
from domain.errors import Forbidden
from domain.facilities import Facility
from domain.principal import Principal
from domain.smart.scopes import readable
from infra.db import Connection


def require_group_reader(principal: Principal) -> None:
    if principal.is_system_admin:
        return
    if principal.client_scopes is not None and readable(principal.client_scopes, ("Group",)):
        return
    raise Forbidden("role_required", "Groups are read by backend clients (system/Group.read) and system administrators")


def group(f: Facility, members: int) -> Resource:
    return {
        "resourceType": "Group",
        "id": str(f.id),
        "meta": {"versionId": "1", "lastUpdated": instant(f.updated_at)},
        "type": "person",
        "actual": True,
        "name": f"Patients of {f.name}",
        "managingEntity": ref("Organization", f.id),
        "quantity": members,
    }


async def _members(conn: Connection, facility_id: uuid.UUID) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM patients WHERE home_facility_id = $1", facility_id)
    return count


class FhirGroupController(Controller):
    path = "/fhir/Group"
    tags = ["fhir"]

    @get("/{group_id:uuid}", summary="Read a Group (a facility's patients)")
    async def read(self, group_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Response[Any]:
        require_group_reader(principal)
        return fhir(group(await facilities.get(conn, group_id), await _members(conn, group_id)))

    @get("", summary="Every Group (one per facility)")
    async def search(
        self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, settings: Config
    ) -> Response[Any]:
        require_group_reader(principal)
        if request.query_params and strict(request.headers.get("prefer")):
            name = next(iter(request.query_params))
            raise InputRejected("unknown_search_parameter", name, "Group takes no search parameters here", "query")
        rows = await conn.fetch(
            """SELECT f.id, count(p.id) AS members FROM facilities f LEFT JOIN patients p ON p.home_facility_id = f.id
               GROUP BY f.id ORDER BY f.id"""
        )
        resources = [group(await facilities.get(conn, r["id"]), r["members"]) for r in rows]
        document = bundle(settings.public_base_url, "searchset", resources, self_path="/fhir/Group")
        document["total"] = len(resources)
        return fhir(document)
