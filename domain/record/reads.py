"""Reads of the record, each one statement: the caller's basis for reading (access.RECORD_BASIS),
the read's audit events, and the rows.

A read is decided, audited and answered together: the statement inserts its audit events itself,
only when it found a basis (a data-modifying CTE runs once, whatever the rest of the statement
reads), in the request's transaction, so they commit with the answer or not at all. A refusal
inserts nothing; the caller audits it apart (service._refused), since the request's transaction
rolls back with the 403. The events are those trail.record writes, column for column.

Three round trips (basis, rows, audit) became one: each cost ~0.07 ms of the worker's CPU and
~0.04 ms of PostgreSQL's on the 2-core bench machine (bench/RESULTS.md, "Record read").
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import NamedTuple

from domain import access
from domain.principal import Principal
from domain.record.store import COLUMNS, to_entry
from domain.record.types import Entry
from infra.db import Connection

# The resource type each kind is audited as (FHIR's names).
RESOURCE_TYPE = {
    "encounter": "Encounter",
    "observation": "Observation",
    "condition": "Condition",
    "prescription": "MedicationRequest",
    "note": "ClinicalNote",
    "attachment": "Attachment",
    "allergy": "AllergyIntolerance",
    "immunization": "Immunization",
}
_RESOURCE_TYPE_OF_KIND = (
    "CASE s.kind " + " ".join(f"WHEN '{kind}' THEN '{name}'" for kind, name in RESOURCE_TYPE.items()) + " END"
)


class Read(NamedTuple):
    """What a read statement found: `basis` None means refused (nothing was audited or read)."""

    home_facility_id: uuid.UUID
    basis: str | None
    entries: list[Entry]


class _Args:
    """The statement's parameters by value, numbered after RECORD_BASIS's own $1-$3."""

    def __init__(self, principal: Principal) -> None:
        self.values: list[object] = list(access.record_args(principal))

    def __call__(self, value: object, cast: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{cast}"


def audit_sql(
    args: Callable[[object, str], str],
    principal: Principal,
    events: list[tuple[str, str, str]],
    otherwise: str = "NULL",
) -> str:
    """The INSERT of the read's events (action, resource type, resource id: SQL expressions over
    the source `s`; `args(value, type)` adds a parameter and returns its placeholder, after
    access.record_args' own $1-$3, which has patient_id, home_facility_id and basis), in the given order, if `s`
    has a basis. The facility is the reader's (access.authoring_facility: the patient's home if
    the reader works there in a clinical role, else the reader's own; $1 is those facilities),
    or `otherwise` if the reader has none."""
    values = ", ".join(f"({n}, {action}, {kind}, {ident})" for n, (action, kind, ident) in enumerate(events))
    return f"""INSERT INTO audit_events (actor_user_id, actor_role, facility_id, patient_id, action, resource_type,
                                      resource_id, purpose, channel, outcome, request_id)
        SELECT {args(principal.user_id, "uuid")}, {args(principal.primary_role, "text")},
               coalesce(CASE WHEN s.home_facility_id = ANY($1::uuid[]) THEN s.home_facility_id
                             ELSE {args(access.authoring_facility(principal), "uuid")} END, {otherwise}),
               s.patient_id, v.action, v.resource_type, v.resource_id, s.basis, {args(principal.channel, "text")},
               'success', {args(principal.request_id, "text")}
        FROM s CROSS JOIN LATERAL (VALUES {values}) AS v(n, action, resource_type, resource_id)
        WHERE s.basis IS NOT NULL ORDER BY v.n"""


async def patient_entries(
    conn: Connection,
    principal: Principal,
    patient_id: uuid.UUID,
    *,
    where: str,
    order: str,
    limit: int,
    params: list[tuple[object, str]],
    patient_read: bool = False,
) -> Read | None:
    """A patient's entries matching `where` (SQL over record_entries, $1 to $n of `params`
    as {0} to {n-1}, each (value, SQL type)), in `order`, at most `limit`, audited as a search of
    their Record (and, with `patient_read`, a read of the Patient after it). None: no such patient."""
    args = _Args(principal)
    patient = args(patient_id, "uuid")
    placeholders = [args(value, cast) for value, cast in params]
    events = [(args("search", "text"), args("Record", "text"), f"{patient}::text")]
    if patient_read:
        events.append((args("read", "text"), args("Patient", "text"), f"{patient}::text"))
    sql = f"""
        WITH s AS MATERIALIZED (
            SELECT p.id AS patient_id, p.home_facility_id, {access.RECORD_BASIS} AS basis
            FROM patients p WHERE p.id = {patient}),
        audited AS ({audit_sql(args, principal, events)})
        SELECT s.home_facility_id AS read_home, s.basis AS read_basis, r.*
        FROM s LEFT JOIN LATERAL (
            SELECT {COLUMNS} FROM record_entries
            WHERE s.basis IS NOT NULL AND patient_id = {patient} AND status <> 'superseded'
              AND ({where.format(*placeholders)})
            ORDER BY {order} LIMIT {args(limit, "bigint")}) r ON true
        ORDER BY {", ".join(f"r.{term}" for term in order.split(", "))}"""
    rows = await conn.fetch(sql, *args.values)
    if not rows:
        return None
    first = rows[0]
    entries = [to_entry(row) for row in rows] if first["id"] is not None else []
    return Read(first["read_home"], first["read_basis"], entries)


async def entry(conn: Connection, principal: Principal, entry_id: uuid.UUID) -> tuple[Entry, Read] | None:
    """The current version of an entry, audited as a read of it (naming the entry's facility if the
    reader has none, as service._audit does). None: no such entry."""
    args = _Args(principal)
    events = [(args("read", "text"), _RESOURCE_TYPE_OF_KIND, "s.id::text")]
    sql = f"""
        WITH e AS MATERIALIZED (
            SELECT {COLUMNS} FROM record_entries WHERE id = {args(entry_id, "uuid")} AND status <> 'superseded'),
        s AS MATERIALIZED (
            SELECT e.id, e.kind, e.patient_id, e.facility_id, p.home_facility_id, {access.RECORD_BASIS} AS basis
            FROM e JOIN patients p ON p.id = e.patient_id),
        audited AS ({audit_sql(args, principal, events, otherwise="s.facility_id")})
        SELECT s.home_facility_id AS read_home, s.basis AS read_basis, e.* FROM e CROSS JOIN s"""
    row = await conn.fetchrow(sql, *args.values)
    if row is None:
        return None
    found = to_entry(row)
    return found, Read(row["read_home"], row["read_basis"], [found])
