"""FHIR create, conditional create and update, for Patient and the record's clinical types, through
the app API's own domain functions: `patients.register` and `patients.update`, `record.write`,
`record.correct` and `record.mark_entered_in_error`. So the same access rules, consent, checks
(catalogue, ranges, ICD-10) and audit apply, and there is one write path, not two. The HTTP
routes, batch and transaction Bundles and $validate all come here.

Updates follow the record's rule: a clinical entry is never overwritten; an update is a new
version (a correction, or a version marked entered-in-error when the resource says so) and must
name the version it replaces (If-Match; 428 without, 412 when it moved on). A Patient update may
name its version (412 if it moved on) or not, as in the app API.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple
from urllib.parse import parse_qsl

from api.fhir import admin
from api.fhir.clinical import KIND_OF, WRITTEN, Resource, to_fhir
from api.fhir.inbound import Refs, bad, entry_in, in_resource, patient_in, patient_patch
from api.fhir.params import TYPES
from api.fhir.preconditions import BadRequest, PreconditionFailed, PreconditionRequired
from api.fhir.query import parse
from api.fhir.resources_in import FhirPatient, FhirResource
from api.fhir.runners import RUNNERS, Ctx
from domain import access, patients
from domain.errors import Conflict, NotFound
from domain.principal import Principal
from domain.record import service as record
from domain.record import store
from infra.db import Connection, Pool

DEFAULT_REASON = "updated through FHIR (no reason given)"
WRITABLE = ("Patient", *WRITTEN)


class Written(NamedTuple):
    resource: Resource
    created: bool  # 201 Created, else 200 OK (updated, or found by a conditional create)

    @property
    def location(self) -> str:
        r = self.resource
        return f"{r['resourceType']}/{r['id']}/_history/{r['meta']['versionId']}"


def type_of(resource: FhirResource) -> str:
    name: str = type(resource).__struct_config__.tag  # type: ignore[assignment]
    return name


def _check_type(resource: FhirResource, resource_type: str, field: str) -> None:
    if type_of(resource) != resource_type:
        raise BadRequest(
            "resource_type_mismatch", f"the resource is a {type_of(resource)}, the URL names {resource_type}",
            field=field,
        )  # fmt: skip


async def create(
    conn: Connection, principal: Principal, resource: FhirResource, *, at: str, refs: Refs, default_region: str
) -> Written:
    resource_type = type_of(resource)
    if isinstance(resource, FhirPatient):
        # A health worker's patient belongs to their facility unless the resource says which.
        default_facility = min(principal.facilities_with("chw", "clinician", "facility_admin"), default=None)
        data = patient_in(resource, at, default_facility, refs)
        patient = await in_resource(patients.register(conn, principal, data, default_region=default_region), at,
                                    resource_type)  # fmt: skip
        return Written(admin.patient(patient), created=True)
    inbound = entry_in(resource, at, refs)
    if inbound.entered_in_error:
        where = "verificationStatus" if resource_type in ("Condition", "AllergyIntolerance") else "status"
        raise bad(f"{at}.{where}", "a new resource is not entered in error", "invalid_status")
    saved = await in_resource(record.write(conn, principal, inbound.patient_id, inbound.entry), at, resource_type)
    return Written(to_fhir(saved), created=True)


def _identifier_condition(condition: str, field: str) -> str:
    """The identifier an If-None-Exist names (`identifier=system|value`): the one criterion that
    names a patient for sure, and the one registration checks for duplicates."""
    try:
        params = parse_qsl(condition.removeprefix("Patient?"), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise BadRequest("invalid_condition", "If-None-Exist is a query, e.g. identifier=system|value",
                         field=field) from None  # fmt: skip
    names = {name for name, _ in params}
    if names != {"identifier"} or len(params) != 1 or not params[0][1]:
        raise BadRequest(
            "unsupported_condition", "If-None-Exist takes one parameter: identifier=system|value", field=field
        )
    return params[0][1]


async def _found_by(
    conn: Connection, principal: Principal, pool: Pool, resource_type: str, condition: str, *, field: str, region: str
) -> list[Resource]:
    """What a search of `resource_type` by `condition` (its own search parameters, as the search
    route parses them, strictly) finds among what the caller may see: at most two."""
    t = TYPES[resource_type]
    try:
        params = parse_qsl(condition.removeprefix(f"{resource_type}?"), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise BadRequest("invalid_condition", "If-None-Exist is a query, e.g. patient=…&code=system|code",
                         field=field) from None  # fmt: skip
    if not params or any(name.startswith("_") and name not in ("_id", "_lastUpdated") for name, _ in params):
        raise BadRequest("unsupported_condition", f"If-None-Exist takes {resource_type}'s search parameters",
                         field=field)  # fmt: skip
    # Two creates under the same condition at once would each find nothing: the second waits here
    # for the first to commit, then its search (a statement of its own) sees what the first wrote.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                       f"fhir-conditional-create:{resource_type}?{sorted(params)}")  # fmt: skip
    q = parse(t, params, strict_handling=True, region=region, base="")
    q.count = 2
    matches, _ = await RUNNERS[t.name](Ctx(conn, principal, pool, ""), q.spec(None, None), q)
    return matches


async def conditional_create(
    conn: Connection,
    principal: Principal,
    resource: FhirResource,
    condition: str,
    *,
    at: str,
    field: str,
    refs: Refs,
    default_region: str,
    pool: Pool,
) -> Written:
    """Create unless the condition finds the resource: 200 with the one found, 201 with a new
    one, 412 if it finds several. Only among the resources the caller may see, as any search:
    a Patient by identifier (the criterion registration checks for duplicates), a record type
    by its search parameters."""
    if not isinstance(resource, FhirPatient):
        resource_type = type_of(resource)
        if resource_type not in WRITTEN:
            raise BadRequest("conditional_create_unsupported", f"{resource_type} is not created here", field=field)
        found = await _found_by(conn, principal, pool, resource_type, condition, field=field, region=default_region)
        if len(found) > 1:
            raise PreconditionFailed("multiple_matches", f"If-None-Exist matches several {resource_type}", field=field)
        if found:
            return Written(found[0], created=False)
        return await create(conn, principal, resource, at=at, refs=refs, default_region=default_region)
    identifier = _identifier_condition(condition, field)
    query = patients.PatientQuery(identifier=identifier, limit=2)
    found_patients = await patients.search(conn, principal, query, default_region=default_region)
    if len(found_patients) > 1:
        raise PreconditionFailed("multiple_matches", "If-None-Exist matches several patients", field=field)
    if found_patients:
        return Written(admin.patient(found_patients[0]), created=False)
    return await create(conn, principal, resource, at=at, refs=refs, default_region=default_region)


def _same_id(resource: FhirResource, ident: uuid.UUID, at: str) -> None:
    if resource.id != str(ident):
        raise BadRequest("id_mismatch", "an update carries the id its URL names", field=f"{at}.id")


async def update(
    conn: Connection,
    principal: Principal,
    resource_type: str,
    ident: uuid.UUID,
    resource: FhirResource,
    *,
    at: str,
    refs: Refs,
    if_match: int | None,
    if_match_field: str = "If-Match",
    reason: str | None,
    default_region: str,
) -> Written:
    _check_type(resource, resource_type, f"{at}.resourceType")
    _same_id(resource, ident, at)
    if isinstance(resource, FhirPatient):
        await access.require_can_read_patient(conn, principal, ident)  # as patients.update, before anything
        current = (await patients.load_many(conn, [ident]))[ident]
        patch = patient_patch(resource, at, current, refs)
        step = patients.update(conn, principal, ident, patch, default_region=default_region, expected_version=if_match)
        try:
            return Written(admin.patient(await in_resource(step, at, resource_type)), created=False)
        except Conflict as exc:
            if exc.code == "version_mismatch":
                raise PreconditionFailed("version_conflict", exc.detail, field=if_match_field) from exc
            raise
    head = await store.head(conn, ident)
    if head is None:
        raise NotFound("entry_not_found", f"no such {resource_type}")
    await access.require_can_write_record(conn, principal, head.patient_id)  # before saying what it is
    if head.kind != KIND_OF[resource_type]:
        raise NotFound("entry_not_found", f"no such {resource_type}")
    if if_match is None:
        raise PreconditionRequired(
            "if_match_required", 'an update of the record names the version it replaces: If-Match: W/"{versionId}"',
            field=if_match_field,
        )  # fmt: skip
    inbound = entry_in(resource, at, refs, current_mode=head.body.get("mode"))
    if inbound.patient_id != head.patient_id:
        where = "patient" if resource_type in ("AllergyIntolerance", "Immunization") else "subject"
        raise bad(f"{at}.{where}", "an entry stays in the record of its patient", "subject_mismatch")
    why = reason or DEFAULT_REASON
    if inbound.entered_in_error:
        change = record.mark_entered_in_error(conn, principal, ident, expected_version=if_match, reason=why)
    else:
        change = record.correct(conn, principal, ident, expected_version=if_match, entry=inbound.entry, reason=why)
    try:
        saved = await in_resource(change, at, resource_type)
    except Conflict as exc:
        if exc.code == "version_conflict":
            raise PreconditionFailed("version_conflict", exc.detail, field=if_match_field, **exc.extra) from exc
        raise
    return Written(to_fhir(saved), created=False)
