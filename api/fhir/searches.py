"""FHIR search, one route for every type: the request is read against the parameter table
(api/fhir/query.py), the type's finder pages it (api/fhir/runners.py), _include/_revinclude and
_elements are applied, and the Bundle links to the next and previous pages. Also
Patient/$everything, paged by _count across the patient, their appointments and their record."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, cast
from urllib.parse import parse_qsl

from litestar import Controller, Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, Parameter

from api.deps import Caller, Config, Conn, DbPool
from api.errors import InputRejected
from api.fhir import admin
from api.fhir.bundle import fhir, searchset, subset
from api.fhir.clinical import BY_KIND, Resource, to_fhir
from api.fhir.openapi_search import documented
from api.fhir.params import APPOINTMENT, TYPES, SearchType
from api.fhir.query import bad, decode_cursor, encode_cursor, parse, strict
from api.fhir.runners import RUNNERS, Ctx, included
from domain import access, patients
from domain.audit import trail
from domain.errors import NotFound
from domain.record import service as record_service
from domain.search import finders
from domain.search.engine import Criterion, Key, Ref, RefIs, Spec

SearchableType = Annotated[str, Parameter(description="a resource type", schema_extra={"enum": sorted(TYPES)})]
_EVERYTHING_COUNT = 1000
_EVERYTHING_KINDS = list(BY_KIND)
_SEQ = [Key("e.seq", "int")]
_PATIENT_REF = cast(Ref, APPOINTMENT.by_param["patient"].field)


def _items(request: Request[Any, Any, Any]) -> list[tuple[str, str]]:
    return parse_qsl(request.scope.get("query_string", b"").decode(), keep_blank_values=True)


def _route(t: SearchType) -> HTTPRouteHandler:
    async def search(
        self: FhirSearchController,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Caller,
        settings: Config,
        pool: DbPool,
    ) -> Response[Any]:
        return await self._search(t.name, request, conn, principal, settings, pool)

    search.__name__ = search.__qualname__ = f"search_{t.name}"
    return get(f"/{t.name}", summary=f"Search {t.name}", operation_class=documented(t))(search)


class FhirSearchController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    # One route per type (Litestar's router does not fall back from a static segment such as
    # `/Consent`, there for reads, to `/{resource_type}`), each documented from the table.
    locals().update({f"search_{name}": _route(t) for name, t in TYPES.items()})

    @get("/{resource_type:str}", summary="Any other type: 404 unknown_resource_type", include_in_schema=False)
    async def search_other(
        self,
        resource_type: SearchableType,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Caller,
        settings: Config,
        pool: DbPool,
    ) -> Response[Any]:
        return await self._search(resource_type, request, conn, principal, settings, pool)

    async def _search(
        self,
        resource_type: str,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Caller,
        settings: Config,
        pool: DbPool,
    ) -> Response[Any]:
        t = TYPES.get(resource_type)
        if t is None:
            raise NotFound("unknown_resource_type", f"this server has no {resource_type} resources")
        base = settings.public_base_url
        q = parse(
            t, _items(request), strict_handling=strict(request.headers.get("prefer")),
            region=settings.default_region, base=base,
        )  # fmt: skip
        after = before = None
        if q.cursor is not None:
            keyset, backwards, _ = decode_cursor(q.cursor, q.order)
            after, before = (None, keyset) if backwards else (keyset, None)
        ctx = Ctx(conn, principal, pool, base)
        matches, found = await RUNNERS[t.name](ctx, q.spec(after, before), q)
        extra, outcome = await included(ctx, q, matches) if matches else ([], None)
        if q.elements is not None:
            matches = [subset(r, q.elements) for r in matches]
        keys = found.keys
        if before is not None:
            next_key, previous_key = keys[-1] if keys else None, keys[0] if keys and found.more else None
        else:
            next_key = keys[-1] if keys and found.more else None
            previous_key = keys[0] if keys and after is not None else None
        return fhir(
            searchset(
                base, f"/fhir/{t.name}", q.used, matches, included=extra, outcome=outcome, total=found.total,
                next_cursor=None if next_key is None else encode_cursor(q.order, next_key, False),
                previous_cursor=None if previous_key is None else encode_cursor(q.order, previous_key, True),
            )
        )  # fmt: skip

    @get("/Patient/{patient_id:uuid}/$everything", summary="Everything in a patient's record, paged by _count")
    async def everything(
        self,
        patient_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Caller,
        settings: Config,
        pool: DbPool,
    ) -> Response[Any]:
        """The patient, then their appointments the caller may see, then their record in change
        order: one list, cut into pages of `_count` resources whatever list a page ends in.

        The record's rule decides (as for every clinical read): a reader the record is open to
        also reads whom it is about, audited with the same purpose."""
        count, cursor, used = _EVERYTHING_COUNT, None, []
        for name, value in _items(request):
            if name == "_count":
                if not value.isdigit() or len(value) > 9:
                    raise bad(name, "_count is a whole number")
                count = min(int(value), _EVERYTHING_COUNT)
                used.append((name, value))
            elif name == "_cursor":
                cursor = value
            elif strict(request.headers.get("prefer")):
                raise InputRejected("unknown_search_parameter", name, "$everything takes _count here", "query")
        orders = [[], list(APPOINTMENT.order), _SEQ]
        phase, start = 0, tuple[object, ...]()
        if cursor is not None:
            start, _, phase = decode_cursor(cursor, *orders)
        grant = await record_service.require_read(
            conn, pool, principal, patient_id, action="search", resource_type="Record", resource_id=patient_id
        )
        page: list[Resource] = []
        next_cursor = None
        if count == 0:  # nothing to page through
            phase = 3
        if phase == 0:
            patient = (await patients.load_many(conn, [patient_id]))[patient_id]
            await trail.record(
                conn, principal, action="read", resource_type="Patient", resource_id=patient_id,
                patient_ids=[patient_id], facility_id=access.authoring_facility(principal, grant.home_facility_id),
                purpose=grant.basis,
            )  # fmt: skip
            page.append(admin.patient(patient))
            phase, start = 1, ()
        if phase == 1:
            if len(page) >= count:
                next_cursor = encode_cursor(orders[1], start, False, 1)
            else:
                mine: list[list[Criterion]] = [[RefIs(_PATIENT_REF, "Patient", patient_id)]]
                found = await finders.appointment_list(
                    conn, principal, Spec(mine, orders[1], after=start or None, limit=count - len(page))
                )
                page += [admin.appointment(a) for a in found.items]
                if found.more:
                    next_cursor = encode_cursor(orders[1], found.keys[-1], False, 1)
                else:
                    phase, start = 2, ()
        if phase == 2 and next_cursor is None:
            if len(page) >= count:
                next_cursor = encode_cursor(_SEQ, start, False, 2)
            else:
                spec = Spec([], _SEQ, after=start or None, limit=count - len(page))
                entries = await finders.entries(
                    conn, principal, spec, pool=pool, kinds=_EVERYTHING_KINDS, patient_id=patient_id
                )
                page += [to_fhir(e) for e in entries.items]
                if entries.more:
                    next_cursor = encode_cursor(_SEQ, entries.keys[-1], False, 2)
        return fhir(
            searchset(settings.public_base_url, f"/fhir/Patient/{patient_id}/$everything", used, page,
                      next_cursor=next_cursor)
        )  # fmt: skip
