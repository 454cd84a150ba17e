"""Each searchable type's finder, as FHIR: the query's page from the domain (its access rule and
audit), shaped into resources; then what _include and _revinclude bring, through the same finders
(so an included Patient or Observation is one the caller may see, audited as any search)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from api.fhir import admin
from api.fhir.clinical import BY_KIND, KIND_OF, Resource, to_fhir
from api.fhir.params import TYPES, SearchType
from api.fhir.query import REVINCLUDE_LIMIT, Link, Query, bad
from api.fhir.scheduling import location, schedule, slot
from api.fhir.trail import audit_event, provenance
from domain.booking import availability
from domain.booking.availability import MAX_RANGE_DAYS
from domain.principal import Principal
from domain.search import finders
from domain.search.engine import Criterion, DateIs, IdIs, RefIs, Spec, in_range
from domain.search.finders import Found
from infra.db import Connection, Pool


@dataclass(frozen=True)
class Ctx:
    conn: Connection
    principal: Principal
    pool: Pool
    base: str


Runner = Callable[[Ctx, Spec, Query], Awaitable[tuple[list[Resource], Found[Any]]]]


def _pin(q: Query, name: str) -> Any:
    return q.pins.get(name)


def _record(resource_type: str) -> Runner:
    async def run(ctx: Ctx, spec: Spec, q: Query) -> tuple[list[Resource], Found[Any]]:
        found = await finders.entries(
            ctx.conn, ctx.principal, spec, pool=ctx.pool, kinds=[KIND_OF[resource_type]],
            patient_id=_pin(q, "patient"), include_errors=q.include_errors,
        )  # fmt: skip
        return [to_fhir(e) for e in found.items], found

    return run


async def _provenance(ctx: Ctx, spec: Spec, q: Query) -> tuple[list[Resource], Found[Any]]:
    found = await finders.entries(
        ctx.conn, ctx.principal, spec, pool=ctx.pool, kinds=list(BY_KIND), patient_id=_pin(q, "patient"),
        versions=True, include_errors=True,
    )  # fmt: skip
    return [provenance(e) for e in found.items], found


async def _patients(ctx: Ctx, spec: Spec, q: Query) -> tuple[list[Resource], Found[Any]]:
    found = await finders.patient_list(ctx.conn, ctx.principal, spec)
    return [admin.patient(p) for p in found.items], found


async def _practitioners(ctx: Ctx, spec: Spec, q: Query) -> tuple[list[Resource], Found[Any]]:
    found = await finders.practitioner_list(ctx.conn, spec)
    return [admin.practitioner(p) for p in found.items], found


async def _schedules(ctx: Ctx, spec: Spec, q: Query) -> tuple[list[Resource], Found[Any]]:
    found = await finders.practitioner_list(ctx.conn, spec)
    return [schedule(p) for p in found.items], found


async def _organizations(ctx: Ctx, spec: Spec, q: Query) -> tuple[list[Resource], Found[Any]]:
    found = await finders.facility_list(ctx.conn, spec)
    return [admin.organization(f) for f in found.items], found


async def _locations(ctx: Ctx, spec: Spec, q: Query) -> tuple[list[Resource], Found[Any]]:
    found = await finders.facility_list(ctx.conn, spec)
    return [location(f) for f in found.items], found


async def _appointments(ctx: Ctx, spec: Spec, q: Query) -> tuple[list[Resource], Found[Any]]:
    found = await finders.appointment_list(ctx.conn, ctx.principal, spec)
    return [admin.appointment(a) for a in found.items], found


async def _referrals(ctx: Ctx, spec: Spec, q: Query) -> tuple[list[Resource], Found[Any]]:
    found = await finders.referral_list(ctx.conn, ctx.principal, spec)
    return [admin.service_request(r) for r in found.items], found


async def _consents(ctx: Ctx, spec: Spec, q: Query) -> tuple[list[Resource], Found[Any]]:
    found = await finders.consent_list(ctx.conn, ctx.principal, spec, patient_id=_pin(q, "patient"))
    return [admin.consent(c) for c in found.items], found


async def _audit(ctx: Ctx, spec: Spec, q: Query) -> tuple[list[Resource], Found[Any]]:
    [site] = _pin(q, "site")
    if site.value is None:
        raise bad("site", "site is an Organization id")
    found = await finders.audit_list(ctx.conn, ctx.principal, spec, site=site.value)
    return [audit_event(e) for e in found.items], found


def _window(criteria: list[list[Criterion]], now: datetime) -> tuple[datetime, datetime]:
    """The days free slots are computed for: what the `start` criteria allow, from now, 7 days
    unless an upper bound says otherwise, at most MAX_RANGE_DAYS."""
    low, high = now, None
    for group in criteria:
        if not all(isinstance(c, DateIs) for c in group):
            continue
        lows = [c.start if c.comparator in ("eq", "ge") else c.end if c.comparator in ("gt", "sa") else None
                for c in group if isinstance(c, DateIs)]  # fmt: skip
        highs = [c.end if c.comparator in ("eq", "le") else c.start if c.comparator in ("lt", "eb") else None
                 for c in group if isinstance(c, DateIs)]  # fmt: skip
        if all(v is not None for v in lows):
            low = max(low, min(v for v in lows if v is not None))
        if all(v is not None for v in highs):
            bound = max(v for v in highs if v is not None)
            high = bound if high is None else min(high, bound)
    last = high if high is not None else low + timedelta(days=7)
    return low, min(last, low + timedelta(days=MAX_RANGE_DAYS))


async def _slots(ctx: Ctx, spec: Spec, q: Query) -> tuple[list[Resource], Found[Any]]:
    """Free slots are computed, not stored: the table's criteria are applied here in Python with
    the engine's own comparators, and the page is cut by the same keyset (start, id)."""
    [schedule_ref] = [c for c in _pin(q, "schedule") if isinstance(c, RefIs)]
    if schedule_ref.id is None or schedule_ref.target != "Schedule":
        return [], Found([], [], False, 0 if spec.total else None)
    low, high = _window(spec.criteria, datetime.now(UTC))
    free = await availability.list_free_slots(
        ctx.conn, first_day=low.date(), last_day=max(high.date(), low.date()), practitioner_id=schedule_ref.id
    )
    rows = []
    for s in free:
        resource = slot(s)
        if all(any(_slot_matches(resource, s.start, c) for c in group) for group in spec.criteria):
            rows.append(((s.start, resource["id"]), resource))
    rows.sort(key=lambda r: r[0])
    total = len(rows) if spec.total else None
    if spec.before is not None:
        before = [r for r in rows if r[0] < spec.before]
        page, more = before[-spec.limit :] if spec.limit else [], len(before) > spec.limit
    else:
        after = [r for r in rows if spec.after is None or r[0] > spec.after]
        page, more = after[: spec.limit], len(after) > spec.limit
    return [r for _, r in page], Found([r for _, r in page], [k for k, _ in page], more, total)


def _slot_matches(resource: Resource, start: datetime, c: Criterion) -> bool:
    if isinstance(c, DateIs):
        return in_range(start, c)
    if isinstance(c, IdIs):
        return bool(c.value == resource["id"])
    return False


RUNNERS: dict[str, Runner] = {
    "Patient": _patients,
    "Practitioner": _practitioners,
    "Organization": _organizations,
    "Location": _locations,
    "Schedule": _schedules,
    "Slot": _slots,
    "Appointment": _appointments,
    "ServiceRequest": _referrals,
    "Consent": _consents,
    "Provenance": _provenance,
    "AuditEvent": _audit,
    **{name: _record(name) for name in KIND_OF},
}
assert set(RUNNERS) == set(TYPES), "every declared type has a finder"


def _references(resource: Resource, path: str) -> list[str]:
    values: list[Any] = [resource]
    for step in path.split("."):
        values = [v.get(step) for v in values if isinstance(v, dict)]
        values = [x for v in values for x in (v if isinstance(v, list) else [v]) if x is not None]
    return [v["reference"] for v in values if isinstance(v, dict) and isinstance(v.get("reference"), str)]


async def _by_ids(ctx: Ctx, t: SearchType, ids: list[str]) -> list[Resource]:
    id_field = t.by_param["_id"].field
    group: list[Criterion] = [IdIs(id_field, _as_key(i, t)) for i in ids]  # type: ignore[arg-type]
    q = Query(t, criteria=[group], count=len(ids), order=list(t.order))
    resources, _ = await RUNNERS[t.name](ctx, q.spec(), q)
    return resources


def _as_key(ident: str, t: SearchType) -> object | None:
    if t.by_param["_id"].sort == "uuid":
        try:
            return uuid.UUID(ident)
        except ValueError:
            return None
    return ident


async def included(ctx: Ctx, q: Query, matches: list[Resource]) -> tuple[list[Resource], Resource | None]:
    """What _include and _revinclude add to a page, once each, and an OperationOutcome when a
    _revinclude found more than REVINCLUDE_LIMIT (the rest is left out)."""
    seen = {(r["resourceType"], r["id"]) for r in matches}
    wanted: dict[str, list[str]] = {}
    for link in q.includes:
        assert link.param.path is not None
        for reference in (x for r in matches for x in _references(r, link.param.path)):
            kind, _, ident = reference.partition("/")
            if kind in link.param.targets and link.target in (None, kind) and (kind, ident) not in seen:
                seen.add((kind, ident))
                wanted.setdefault(kind, []).append(ident)
    found: list[Resource] = []
    for kind, ids in wanted.items():
        found += await _by_ids(ctx, TYPES[kind], ids)
    truncated = False
    for link in q.revincludes:
        found_more, resources = await _revinclude(ctx, q.type.name, link, matches)
        truncated |= found_more
        for r in resources:
            if (r["resourceType"], r["id"]) not in seen:
                seen.add((r["resourceType"], r["id"]))
                found.append(r)
    outcome = None
    if truncated:
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "too-costly",
                       "diagnostics": f"_revinclude brought at most {REVINCLUDE_LIMIT} resources per link"}],
        }  # fmt: skip
    return found, outcome


async def _revinclude(ctx: Ctx, target: str, link: Link, matches: list[Resource]) -> tuple[bool, list[Resource]]:
    ids = [uuid.UUID(r["id"]) for r in matches if _as_key(r["id"], TYPES[target]) is not None]
    if not ids or target not in link.param.targets:
        return False, []
    ref_field = link.param.field
    group: list[Criterion] = [RefIs(ref_field, target, i) for i in ids]  # type: ignore[arg-type]
    q = Query(link.source, criteria=[group], count=REVINCLUDE_LIMIT, order=list(link.source.order))
    resources, found = await RUNNERS[link.source.name](ctx, q.spec(), q)
    return found.more, resources
