"""FHIR search, one route for every type: the request is read against the parameter table
(api/fhir/query.py), the type's finder pages it (api/fhir/runners.py), _include/_revinclude and
_elements are applied, and the Bundle links to the next and previous pages. Also
Patient/$everything, paged by _count across the patient, their appointments and their record,
narrowed by _type and _since."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, cast
from urllib.parse import parse_qsl

from litestar import Controller, Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, Parameter

from api import transaction
from api.deps import Caller, Config, Conn, DbPool
from api.errors import InputRejected
from api.fhir import admin
from api.fhir.bundle import fhir, searchset, subset
from api.fhir.clinical import BY_KIND, KIND_OF, Resource, to_fhir
from api.fhir.documents import KINDS as DOCUMENT_KINDS
from api.fhir.documents import document_reference
from api.fhir.history import since_instant
from api.fhir.openapi_search import documented
from api.fhir.params import APPOINTMENT, TYPES, SearchType
from api.fhir.query import bad, decode_cursor, encode_cursor, parse, strict
from api.fhir.runners import RUNNERS, Ctx, included
from api.fhir.trail import provenance
from api.transaction import ON_DEMAND
from domain import access, patients
from domain.audit import trail
from domain.consent import service as consent
from domain.errors import Forbidden, NotFound
from domain.record import service as record_service
from domain.referral import worklists
from domain.search import finders
from domain.search.engine import Criterion, DateIs, Key, Moment, Ref, RefIs, Spec

SearchableType = Annotated[str, Parameter(description="a resource type", schema_extra={"enum": sorted(TYPES)})]
_EVERYTHING_COUNT = 1000
_EVERYTHING_TYPES = ("Patient", "Appointment", *KIND_OF, "DocumentReference", "ServiceRequest", "Consent", "Provenance")
_WORKFLOW_LIMIT = 200  # referrals, consents: each at most this many
_SEQ = [Key("e.seq", "int")]
_PATIENT_REF = cast(Ref, APPOINTMENT.by_param["patient"].field)
_APPOINTMENT_UPDATED = cast(Moment, APPOINTMENT.by_param["_lastUpdated"].field)
_ENTRY_RECORDED = Moment("e.recorded_at")
_WORKFLOW_ORDER = [Key("workflow.offset", "int")]
_ENTRY_ORDER = [Key("e.seq", "int"), Key("entry.part", "int")]


def _wanted_types(raw: str) -> set[str]:
    """`_type`: a comma-separated list of the types $everything gathers."""
    wanted = {t.strip() for t in raw.split(",") if t.strip()}
    if not wanted or wanted - set(_EVERYTHING_TYPES):
        raise InputRejected("unsupported_type", "_type", f"_type lists some of {', '.join(_EVERYTHING_TYPES)}", "query")
    return wanted


def _since_ok(moment: datetime, since: datetime | None) -> bool:
    return since is None or moment >= since


def _at_or_after(field: Moment, since: datetime | None) -> list[list[Criterion]]:
    return [] if since is None else [[DateIs(field, "ge", since, since)]]


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
    return get(f"/{t.name}", summary=f"Search {t.name}", operation_class=documented(t), opt=ON_DEMAND)(search)


class FhirSearchController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    # One route per type (Litestar's router does not fall back from a static segment such as
    # `/Consent`, there for reads, to `/{resource_type}`), each documented from the table.
    locals().update({f"search_{name}": _route(t) for name, t in TYPES.items()})

    @get(
        "/{resource_type:str}",
        summary="Any other type: 404 unknown_resource_type",
        include_in_schema=False,
        opt=ON_DEMAND,
    )
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
        spec = q.spec(after, before)
        one_statement = (
            t.name in KIND_OF
            and not q.includes
            and not q.revincludes
            and isinstance(patient := q.pins.get("patient"), uuid.UUID)
            and finders.entries_in_one_statement(conn, spec, patient)
        )
        if not one_statement:  # else its check, audit and page need no transaction around them
            await transaction.begin(request.scope)
        matches, found = await RUNNERS[t.name](ctx, spec, q)
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
        """The patient, their referrals and consents, then their appointments the caller may see,
        then their record (clinical entries, documents, each entry's Provenance) in change order:
        one list, cut into pages of `_count` resources whatever list a page ends in. `_type`
        narrows to the listed types; `_since` keeps what changed at or after that instant.

        The record's rule decides whether the operation runs at all (as for every clinical read):
        a reader the record is open to also reads whom it is about, audited with the same
        purpose. Each other part is read by its own rule: appointments by scheduling's
        visibility, referrals (ServiceRequest) by staff of the referring or receiving facility,
        consents by the patient's side only (anyone else simply finds none)."""
        count, cursor, used = _EVERYTHING_COUNT, None, []
        types, since = set(_EVERYTHING_TYPES), None
        for name, value in _items(request):
            if name == "_count":
                if not value.isdigit() or len(value) > 9:
                    raise bad(name, "_count is a whole number")
                count = min(int(value), _EVERYTHING_COUNT)
                used.append((name, value))
            elif name == "_type":
                types = _wanted_types(value)
                used.append((name, value))
            elif name == "_since":
                since = since_instant(value)
                used.append((name, value))
            elif name == "_cursor":
                cursor = value
            elif strict(request.headers.get("prefer")):
                raise InputRejected(
                    "unknown_search_parameter", name, "$everything takes _count, _type and _since here", "query"
                )
        # Each record entry brings its Provenance when that is asked for, whatever its own type.
        clinical = {KIND_OF[t] for t in types if t in KIND_OF}
        kinds = [k for k in BY_KIND if k in clinical or "Provenance" in types]
        kinds += DOCUMENT_KINDS if "DocumentReference" in types else []
        orders = [[], _WORKFLOW_ORDER, list(APPOINTMENT.order), _ENTRY_ORDER]
        phase, start = 0, tuple[object, ...]()
        if cursor is not None:
            start, _, phase = decode_cursor(cursor, *orders)
        grant = await record_service.require_read(
            conn, pool, principal, patient_id, action="search", resource_type="Record", resource_id=patient_id
        )
        page: list[Resource] = []
        next_cursor = None
        if count == 0:  # nothing to page through
            phase = 4
        if phase == 0:
            patient = (await patients.load_many(conn, [patient_id]))[patient_id]
            if "Patient" in types and _since_ok(patient.updated_at, since):
                await trail.record(
                    conn, principal, action="read", resource_type="Patient", resource_id=patient_id,
                    patient_ids=[patient_id], facility_id=access.authoring_facility(principal, grant.home_facility_id),
                    purpose=grant.basis,
                )  # fmt: skip
                page.append(admin.patient(patient))
            phase, start = 1, ()
        if phase == 1:
            # Referrals and consents (at most _WORKFLOW_LIMIT each): paged by their place in the list.
            offset = cast(int, start[0]) if start else 0
            if len(page) >= count:
                next_cursor = encode_cursor(orders[1], start, False, 1)
            else:
                workflow = await _workflow(conn, principal, patient_id, types, since)
                end = offset + count - len(page)
                page += workflow[offset:end]
                if end < len(workflow):
                    next_cursor = encode_cursor(orders[1], (end,), False, 1)
                else:
                    phase, start = 2, ()
        if phase == 2 and next_cursor is None and "Appointment" not in types:
            phase, start = 3, ()
        if phase == 2 and next_cursor is None:
            if len(page) >= count:
                next_cursor = encode_cursor(orders[2], start, False, 2)
            else:
                mine: list[list[Criterion]] = [[RefIs(_PATIENT_REF, "Patient", patient_id)]]
                found = await finders.appointment_list(
                    conn, principal,
                    Spec(mine + _at_or_after(_APPOINTMENT_UPDATED, since), orders[2], after=start or None,
                         limit=count - len(page)),
                )  # fmt: skip
                page += [admin.appointment(a) for a in found.items]
                if found.more:
                    next_cursor = encode_cursor(orders[2], found.keys[-1], False, 2)
                else:
                    phase, start = 3, ()
        if phase == 3 and next_cursor is None and kinds:
            if len(page) >= count:
                next_cursor = encode_cursor(orders[3], start, False, 3)
            else:
                next_cursor = await self._entries(
                    conn, principal, pool, patient_id, page, count, start, kinds=kinds, types=types, since=since
                )
        return fhir(
            searchset(settings.public_base_url, f"/fhir/Patient/{patient_id}/$everything", used, page,
                      next_cursor=next_cursor)
        )  # fmt: skip

    @staticmethod
    async def _entries(
        conn: Conn, principal: Caller, pool: DbPool, patient_id: uuid.UUID, page: list[Resource], count: int,
        start: tuple[object, ...], *, kinds: list[str], types: set[str], since: datetime | None,
    ) -> str | None:  # fmt: skip
        """Fill `page` from the record in change order; the next cursor, if any is left.

        An entry gives one or two resources (itself, its Provenance), so a page may end between
        the two: the cursor is (seq of the entry before, resources of the next entry already given)."""
        after, skip = (cast(int, start[0]), cast(int, start[1])) if start else (None, 0)
        room = count - len(page)
        spec = Spec(_at_or_after(_ENTRY_RECORDED, since), _SEQ, after=None if after is None else (after,), limit=room)
        entries = await finders.entries(conn, principal, spec, pool=pool, kinds=kinds, patient_id=patient_id)
        # (seq of the entry before, place within its entry, resource), in order.
        stream: list[tuple[int | None, int, Resource]] = []
        previous = after
        for e in entries.items:
            parts: list[Resource] = []
            if e.kind in DOCUMENT_KINDS:
                parts.append(document_reference(e))
            else:
                if BY_KIND[e.kind][0] in types:
                    parts.append(to_fhir(e))
                if "Provenance" in types:
                    parts.append(provenance(e))
            stream += [(previous, i, r) for i, r in enumerate(parts)]
            previous = e.seq
        stream = stream[skip:]
        taken, left = stream[:room], stream[room:]
        page += [r for _, _, r in taken]
        if left:
            before, given, _ = left[0]
            return encode_cursor(_ENTRY_ORDER, (before if before is not None else 0, given), False, 3)
        if entries.more:
            return encode_cursor(_ENTRY_ORDER, (cast(int, entries.keys[-1][0]), 0), False, 3)
        return None


async def _workflow(
    conn: Conn, principal: Caller, patient_id: uuid.UUID, types: set[str], since: datetime | None
) -> list[Resource]:
    """The referrals and consents $everything leads with, each read by its own rule."""
    found: list[Resource] = []
    if "ServiceRequest" in types:
        referrals = await worklists.for_patient(
            conn, principal, patient_id, statuses=None, after=None, limit=_WORKFLOW_LIMIT
        )
        found += [admin.service_request(r) for r in referrals if _since_ok(r.updated_at, since)]
    if "Consent" in types:
        try:
            consents = await consent.list_for_patient(conn, principal, patient_id)
        except Forbidden:  # consents are the patient's side's to list; others find none here
            consents = []
        found += [admin.consent(c) for c in consents if _since_ok(c.revoked_at or c.granted_at, since)]
    return found
