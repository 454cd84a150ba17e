"""FHIR batch and transaction Bundles: POST (create, conditional with ifNoneExist), PUT (update
with ifMatch) of Patient and the record's clinical types, and GET (read, vread) of any readable
type, each entry through the same functions as its own interaction (api.fhir.writes, history).

A transaction is all or nothing: it runs in the request's one database transaction, so any
entry refused rolls back every entry before it, and the answer is that entry's error (naming
its element, e.g. entry[1].resource.valueQuantity.value). Entries reference each other by
`fullUrl` (urn:uuid:...), resolved to the ids the entries create; FHIR's order applies (creates,
then updates, then reads; among creates, patients, then encounters, then what may reference them).

A batch runs each entry on its own (a savepoint each): an entry refused is reported in its own
response with an OperationOutcome, and the others stand. Batch entries may not reference each
other (FHIR's rule). A lost race (deadlock, serialization failure) in any entry runs the whole
request again (api.transaction), never half of it.

The response carries each entry's status, location, etag and lastModified; the resources too
under `Prefer: return=representation` (GET entries always carry theirs).
"""

from __future__ import annotations

import re
import uuid
from http import HTTPStatus
from typing import Any

import asyncpg

from api.errors import http_status
from api.fhir.bundle_in import Bundle, Entry
from api.fhir.clinical import Resource
from api.fhir.errors import outcome
from api.fhir.history import read
from api.fhir.inbound import Refs, bad
from api.fhir.preconditions import BadRequest, version_of
from api.fhir.resources_in import FhirEncounter, FhirPatient
from api.fhir.writes import Written, conditional_create, create, type_of, update
from domain import constraints
from domain.errors import DomainError, RateLimited, Unavailable
from domain.principal import Principal
from infra.db import Connection, Pool

_TARGET = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})(?:/_history/([^/?]+))?$")


def _rank(entry: Entry) -> int:
    """FHIR's processing order: creates (patients, encounters, then the rest), updates, reads."""
    match entry.request.method:
        case "POST":
            if isinstance(entry.resource, FhirPatient):
                return 0
            return 1 if isinstance(entry.resource, FhirEncounter) else 2
        case "PUT":
            return 3
    return 4


def _status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def _written(written: Written, base: str, with_resource: bool) -> dict[str, Any]:
    r = written.resource
    answer: dict[str, Any] = {
        "response": {
            "status": _status(201 if written.created else 200),
            "location": written.location,
            "etag": f'W/"{r["meta"]["versionId"]}"',
            "lastModified": r["meta"]["lastUpdated"],
        }
    }
    if with_resource:
        answer = {"fullUrl": f"{base}/fhir/{r['resourceType']}/{r['id']}", "resource": r, **answer}
    return answer


def _target(url: str | None, field: str) -> tuple[str, str, str | None]:
    found = _TARGET.match(url or "")
    if found is None:
        detail = "a search in a Bundle is not supported" if url and "?" in url else "the url is {type}/{id}"
        raise BadRequest("invalid_request_url", detail, field=field)
    return found[1], found[2], found[3]


class _Step:
    """One entry's interaction, with what it needs from the request."""

    def __init__(
        self, conn: Connection, principal: Principal, pool: Pool, *, default_region: str, base: str,
        with_resource: bool,
    ) -> None:  # fmt: skip
        self.conn, self.principal, self.pool = conn, principal, pool
        self.default_region, self.base, self.with_resource = default_region, base, with_resource

    async def run(self, entry: Entry, i: int, refs: Refs) -> dict[str, Any]:
        request, resource, at = entry.request, entry.resource, f"entry[{i}]"
        if request.method == "GET":
            if resource is not None:
                raise bad(f"{at}.resource", "a GET entry carries no resource")
            resource_type, ident, version = _target(request.url, f"{at}.request.url")
            found = await read(self.conn, self.principal, self.pool, resource_type, ident, version)
            meta = found["meta"]
            return {
                "fullUrl": f"{self.base}/fhir/{resource_type}/{found['id']}",
                "resource": found,
                "response": {"status": _status(200), "etag": f'W/"{meta["versionId"]}"',
                             "lastModified": meta["lastUpdated"]},
            }  # fmt: skip
        if resource is None:
            raise bad(f"{at}.resource", f"a {request.method} entry carries a resource")
        if request.method == "POST":
            if request.url is not None and request.url.split("?")[0].strip("/") != type_of(resource):
                raise bad(f"{at}.request.url", f"a POST of a {type_of(resource)} goes to {type_of(resource)}")
            if request.ifNoneExist is not None:
                written = await conditional_create(
                    self.conn, self.principal, resource, request.ifNoneExist, at=f"{at}.resource",
                    field=f"{at}.request.ifNoneExist", refs=refs, default_region=self.default_region,
                    pool=self.pool,
                )  # fmt: skip
            else:
                written = await create(
                    self.conn, self.principal, resource, at=f"{at}.resource", refs=refs,
                    default_region=self.default_region,
                )  # fmt: skip
        else:
            resource_type, ident, version = _target(request.url, f"{at}.request.url")
            try:
                key = uuid.UUID(ident)
            except ValueError:
                raise bad(f"{at}.request.url", "the url names a resource of this server: {type}/{id}") from None
            if version is not None:
                raise bad(f"{at}.request.url", "an update names the resource, not a version: {type}/{id}")
            written = await update(
                self.conn, self.principal, resource_type, key, resource, at=f"{at}.resource", refs=refs,
                if_match=version_of(request.ifMatch, f"{at}.request.ifMatch"), if_match_field=f"{at}.request.ifMatch",
                reason=None, default_region=self.default_region,
            )  # fmt: skip
        if entry.fullUrl is not None:
            refs.created[entry.fullUrl] = (written.resource["resourceType"], uuid.UUID(written.resource["id"]))
        return _written(written, self.base, self.with_resource)

    async def isolated(self, entry: Entry, i: int) -> dict[str, Any]:
        """A batch entry: in a savepoint of its own; its refusal becomes its response."""
        try:
            async with self.conn.transaction():
                return await self.run(entry, i, Refs())
        except DomainError as exc:
            if isinstance(exc, Unavailable | RateLimited):
                raise
            error = exc
        except asyncpg.PostgresError as exc:
            mapped = constraints.domain_error(exc)
            if mapped is None or isinstance(mapped, Unavailable):
                raise  # a bug, or a lost race: the whole request runs again
            error = mapped
        status = http_status(error)
        fields = [error.field] if error.field else None
        return {"response": {"status": _status(status), "outcome": outcome(status, error.code, error.detail, fields)}}


async def apply(
    conn: Connection,
    principal: Principal,
    bundle: Bundle,
    *,
    pool: Pool,
    default_region: str,
    base: str,
    with_resources: bool,
) -> Resource:
    if bundle.type not in ("transaction", "batch"):
        raise BadRequest("batch_or_transaction_required", "POST a Bundle of type transaction or batch", field="type")
    entries = bundle.entry
    full_urls: set[str] = set()
    for i, entry in enumerate(entries):  # a reference to a fullUrl must name one entry
        if entry.fullUrl is not None and entry.fullUrl in full_urls:
            raise bad(f"entry[{i}].fullUrl", "each entry of a Bundle has its own fullUrl")
        if entry.fullUrl is not None:
            full_urls.add(entry.fullUrl)
    step = _Step(conn, principal, pool, default_region=default_region, base=base, with_resource=with_resources)
    refs = Refs()
    results: dict[int, dict[str, Any]] = {}
    for i in sorted(range(len(entries)), key=lambda n: _rank(entries[n])):
        if bundle.type == "transaction":
            results[i] = await step.run(entries[i], i, refs)
        else:
            results[i] = await step.isolated(entries[i], i)
    answer: Resource = {"resourceType": "Bundle", "type": f"{bundle.type}-response"}
    if entries:
        answer["entry"] = _distinct_full_urls([results[i] for i in range(len(entries))])
    return answer


def _distinct_full_urls(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """bdl-7: two entries with one fullUrl must differ in meta.versionId. The same version read
    twice (`Patient/1` and `Patient/1/_history/1`) keeps its fullUrl on the first entry only; a
    response entry's fullUrl is optional, and its resource still says what it is."""
    seen: set[tuple[str, str | None]] = set()
    kept = []
    for entry in entries:
        if "fullUrl" in entry:
            key = (entry["fullUrl"], entry["resource"].get("meta", {}).get("versionId"))
            if key in seen:
                entry = {k: v for k, v in entry.items() if k != "fullUrl"}
            seen.add(key)
        kept.append(entry)
    return kept
