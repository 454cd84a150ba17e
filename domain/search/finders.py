"""Search of each stored type: its tables (and the aliases the field declarations use), its access
rule as a SQL condition, and its audit, around one engine page (domain.search.engine).

Aliases: `e` record_entries (with `g.basis`, the reader's basis); `p` patients (also joined to
appointments and consents); `a` appointments, `f` facilities (also the appointment's); `r`
referrals; `c` consents; `pr` practitioners; `ev` audit_events.

The rules are the app API's: the record's RECORD_BASIS row by row (a search naming one patient is
checked first, so a refusal is a 403 consent_required audited as refused, as today), the
patient, appointment and consent lists' rules, referrals for staff of either facility, the audit
trail for the site's admins. Every search is audited as the list it mirrors is.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Generic, TypeVar

from domain import access, facilities, patients, practitioners
from domain.audit import trail
from domain.audit.export import AuditEvent
from domain.booking import model as appointment_model
from domain.booking.appointments import Appointment
from domain.consent import service as consent_service
from domain.consent.service import Consent
from domain.errors import NotFound
from domain.principal import Principal
from domain.record import service as record_service
from domain.record import store
from domain.record.reads import audit_sql
from domain.record.types import Entry
from domain.referral.service import Referral, to_referral
from domain.search.engine import Spec, Sql, fetch_page, page_of, page_order, page_sql, where
from infra.db import Connection, Pool

T = TypeVar("T")


@dataclass
class Found(Generic[T]):
    items: list[T]
    keys: list[tuple[object, ...]]  # each item's keyset, for the page links
    more: bool  # more rows in the direction read
    total: int | None


def _split(select_sql: str) -> tuple[str, str]:
    """(columns, from-clause) of a module's `SELECT ... FROM ...` constant."""
    columns, from_ = re.split(r"\s+FROM\s+", select_sql.strip().removeprefix("SELECT "), maxsplit=1)
    return columns, from_


_RECORD_FROM = f"""record_entries e JOIN LATERAL (
    SELECT p.home_facility_id, {access.RECORD_BASIS} AS basis FROM patients p WHERE p.id = e.patient_id
) g ON g.basis IS NOT NULL"""
_ENTRY_COLUMNS = """e.id, e.version, e.patient_id, e.kind, e.status, e.encounter_id, e.appointment_id, e.code, e.body,
    e.effective_at, e.author_user_id, e.author_role, e.facility_id, e.channel, e.recorded_at, e.reason, e.seq,
    g.home_facility_id AS _home, g.basis AS _basis"""
_PINNED_COLUMNS = _ENTRY_COLUMNS.replace(
    "g.home_facility_id AS _home, g.basis AS _basis", "NULL AS _home, NULL AS _basis"
)


async def entries(
    conn: Connection,
    principal: Principal,
    spec: Spec,
    *,
    pool: Pool,
    kinds: list[str],
    patient_id: uuid.UUID | None = None,
    versions: bool = False,
    include_errors: bool = False,
) -> Found[Entry]:
    """Record entries (current versions, or every version with `versions`) the caller may read.

    Each patient whose entries are returned is audited once (search of the Record, with the basis
    as purpose); a search naming `patient_id` is checked and audited for it even when empty."""
    grants: dict[uuid.UUID, tuple[uuid.UUID, str]] = {}
    if patient_id is not None and entries_in_one_statement(conn, spec, patient_id):
        return await _patient_entries(conn, principal, spec, pool=pool, kinds=kinds, patient_id=patient_id,
                                      versions=versions, include_errors=include_errors)  # fmt: skip
    if patient_id is not None:
        grant = await record_service.require_read(
            conn, pool, principal, patient_id, action="search", resource_type="Record", resource_id=patient_id
        )
        grants[patient_id] = (grant.home_facility_id, grant.basis)
        # Checked: only that patient's rows, without the rule row by row.
        b = Sql()
        conditions = [f"e.patient_id = {b(patient_id)}::uuid"]
        columns, from_ = _PINNED_COLUMNS, "record_entries e"
    else:
        b = Sql(*access.record_args(principal))
        conditions, columns, from_ = [], _ENTRY_COLUMNS, _RECORD_FROM
    conditions += _entry_conditions(b, kinds, versions=versions, include_errors=include_errors)
    rows, keys, more, total = await fetch_page(conn, b, select=columns, from_=from_, conditions=conditions, spec=spec)
    for row in rows:
        grants.setdefault(row["patient_id"], (row["_home"], row["_basis"]))
    for reader_patient, (home, basis) in grants.items():
        await trail.record(
            conn, principal, action="search", resource_type="Record", resource_id=reader_patient,
            patient_ids=[reader_patient], facility_id=access.authoring_facility(principal, home), purpose=basis,
        )  # fmt: skip
    return Found([store.to_entry(r) for r in rows], keys, more, total)


def entries_in_one_statement(conn: Connection, spec: Spec, patient_id: uuid.UUID | None) -> bool:
    """Whether `entries` reads this page in ONE statement (a patient named, no total asked, not on
    a replica, whose audit is kept aside): a caller may then leave it out of any transaction."""
    return patient_id is not None and spec.limit > 0 and not spec.total and not trail.kept_aside(conn)


def _entry_conditions(b: Sql, kinds: list[str], *, versions: bool, include_errors: bool) -> list[str]:
    conditions = [f"e.kind = ANY({b(kinds)}::text[])"]
    if not versions:
        conditions.append("e.status <> 'superseded'")
    if not include_errors:
        conditions.append("e.status <> 'entered_in_error'")
    return conditions


async def _patient_entries(
    conn: Connection,
    principal: Principal,
    spec: Spec,
    *,
    pool: Pool,
    kinds: list[str],
    patient_id: uuid.UUID,
    versions: bool,
    include_errors: bool,
) -> Found[Entry]:
    """One patient's page (no total asked) as ONE statement: the basis (the check above), the
    search's audit event and the rows, as domain.record.reads does for the app API's reads: three
    round trips became one. The event is the one `trail.record` writes above, column for column."""
    b = Sql(*access.record_args(principal))
    patient = f"{b(patient_id)}::uuid"
    filters = [
        f"e.patient_id = {patient}",
        "s.basis IS NOT NULL",
        *_entry_conditions(b, kinds, versions=versions, include_errors=include_errors),
        where(spec.criteria, b),
    ]
    events = [(f"{b('search')}::text", f"{b('Record')}::text", f"{patient}::text")]
    audit = audit_sql(lambda value, cast: f"{b(value)}::{cast}", principal, events)
    page = page_sql(b, select=_PINNED_COLUMNS, from_="record_entries e", filters=filters, spec=spec)
    order = ", ".join(f"page._k{i} {'DESC' if k.desc else 'ASC'}" for i, k in enumerate(page_order(spec)))
    fetched = await conn.fetch(
        f"""WITH s AS MATERIALIZED (
                SELECT p.id AS patient_id, p.home_facility_id, {access.RECORD_BASIS} AS basis
                FROM patients p WHERE p.id = {patient}),
            audited AS ({audit})
            SELECT s.home_facility_id AS _read_home, s.basis AS _read_basis, page.*
            FROM s LEFT JOIN LATERAL ({page}) page ON true
            ORDER BY {order}""",
        *b.args,
    )
    if not fetched:
        raise NotFound("patient_not_found", "no such patient", field="patient_id")
    if fetched[0]["_read_basis"] is None:
        await record_service.refuse(
            pool, principal, patient_id, action="search", resource_type="Record", resource_id=patient_id
        )
    rows, keys, more = page_of(fetched if fetched[0]["id"] is not None else [], spec)
    return Found([store.to_entry(r) for r in rows], keys, more, None)


_PATIENT_COLUMNS, _PATIENT_FROM = _split(patients._SELECT)


async def patient_list(conn: Connection, principal: Principal, spec: Spec) -> Found[patients.Patient]:
    """Patients the caller may see (the patient list's rule), audited as that list is."""
    b = Sql(*access.patient_args(principal))
    rows, keys, more, total = await fetch_page(
        conn, b, select=_PATIENT_COLUMNS, from_=_PATIENT_FROM, conditions=[access.PATIENT_VISIBLE], spec=spec,
        group_by="p.id",
    )  # fmt: skip
    found = [patients.from_row(r) for r in rows]
    if found:
        await trail.record(
            conn, principal, action="search", resource_type="Patient", resource_id=None,
            patient_ids=[p.id for p in found],
        )  # fmt: skip
    return Found(found, keys, more, total)


_APPOINTMENT_COLUMNS, _APPOINTMENT_FROM = _split(appointment_model.SELECT)


async def appointment_list(conn: Connection, principal: Principal, spec: Spec) -> Found[Appointment]:
    b = Sql(*access.appointment_args(principal))
    rows, keys, more, total = await fetch_page(
        conn, b, select=_APPOINTMENT_COLUMNS, from_=_APPOINTMENT_FROM, conditions=[access.APPOINTMENT_VISIBLE],
        spec=spec,
    )  # fmt: skip
    found = [appointment_model.to_appointment(r) for r in rows]
    if found:
        await trail.record(
            conn, principal, action="search", resource_type="Appointment", resource_id=None,
            patient_ids=[a.patient_id for a in found],
        )  # fmt: skip
    return Found(found, keys, more, total)


async def referral_list(conn: Connection, principal: Principal, spec: Spec) -> Found[Referral]:
    """Referrals the caller may read one by one: staff of the referring facility or of the centre."""
    b = Sql()
    staff = b(list(principal.facilities_with(*access.CLINICAL_ROLES, "facility_admin")))
    rule = f"({b(principal.is_system_admin)}::boolean OR r.from_facility_id = ANY({staff}::uuid[])"
    rule += f" OR r.to_facility_id = ANY({staff}::uuid[]))"
    rows, keys, more, total = await fetch_page(conn, b, select="r.*", from_="referrals r", conditions=[rule], spec=spec)
    found = [to_referral(r) for r in rows]
    if found:
        await trail.record(
            conn, principal, action="search", resource_type="ServiceRequest", resource_id=None,
            patient_ids=[r.patient_id for r in found],
        )  # fmt: skip
    return Found(found, keys, more, total)


async def consent_list(
    conn: Connection, principal: Principal, spec: Spec, *, patient_id: uuid.UUID | None = None
) -> Found[Consent]:
    """Consents of the patients whose side the caller is on (the consent list's rule); a search
    naming one patient is refused (403) for anyone else, as the app's list is."""
    if patient_id is not None:
        await access.require_patient_side(conn, principal, patient_id, consent_service._MANAGES)
    b = Sql(*access.patient_args(principal)[:3])  # PATIENT_SIDE takes no practitioner
    rows, keys, more, total = await fetch_page(
        conn, b, select="c.*", from_="consents c JOIN patients p ON p.id = c.patient_id",
        conditions=[access.PATIENT_SIDE], spec=spec,
    )  # fmt: skip
    found = [consent_service._to_consent(r) for r in rows]
    touched = [patient_id] if patient_id is not None else []
    if found or touched:
        await trail.record(
            conn, principal, action="search", resource_type="Consent", resource_id=None,
            patient_ids=[*touched, *(c.patient_id for c in found)],
        )  # fmt: skip
    return Found(found, keys, more, total)


_PRACTITIONER_COLUMNS, _PRACTITIONER_FROM = _split(practitioners._SELECT)


async def practitioner_list(conn: Connection, spec: Spec) -> Found[practitioners.Practitioner]:
    """The directory: every signed-in caller may search it, as the app API's."""
    b = Sql()
    rows, keys, more, total = await fetch_page(
        conn, b, select=_PRACTITIONER_COLUMNS, from_=_PRACTITIONER_FROM, conditions=[], spec=spec, group_by="p.id"
    )
    return Found([practitioners.from_row(r) for r in rows], keys, more, total)


_FACILITY_COLUMNS, _FACILITY_FROM = _split(facilities._SELECT)


async def facility_list(conn: Connection, spec: Spec) -> Found[facilities.Facility]:
    b = Sql()
    rows, keys, more, total = await fetch_page(
        conn, b, select=_FACILITY_COLUMNS, from_=_FACILITY_FROM, conditions=[], spec=spec, group_by="f.id"
    )
    return Found([facilities.from_row(r) for r in rows], keys, more, total)


async def audit_list(conn: Connection, principal: Principal, spec: Spec, *, site: uuid.UUID) -> Found[AuditEvent]:
    """A site's audit trail, for its admins (the export's rule); the search is audited as an export."""
    access.require_facility_admin(principal, site)
    b = Sql()
    at = b(site)
    rule = f"(ev.facility_id = {at}::uuid OR ev.patient_id IN (SELECT id FROM patients WHERE home_facility_id = {at}))"
    rows, keys, more, total = await fetch_page(
        conn, b, select="ev.*", from_="audit_events ev", conditions=[rule], spec=spec
    )
    events = [
        AuditEvent(**{f: r[f] for f in AuditEvent.__struct_fields__ if f != "hash"}, hash=r["hash"] and r["hash"].hex())
        for r in rows
    ]
    await trail.record(
        conn, principal, action="export", resource_type="AuditEvent", resource_id=None,
        patient_ids=[e.patient_id for e in events if e.patient_id is not None], facility_id=site,
    )  # fmt: skip
    return Found(events, keys, more, total)
