"""The shared record's rules: write an entry, correct it (a new version), mark it entered in
error (a new version), read it, its history, and a patient's current record.

Every change is a new row; the previous head is only flagged superseded. A correction names the
version it corrects (`expected_version`): if someone else changed the entry first, the caller
gets a conflict with the current version instead of silently overwriting it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import NoReturn

from domain import access, patients
from domain.audit import trail
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.prescriptions import service as prescriptions
from domain.principal import Principal
from domain.record import reads, store
from domain.record.types import EncounterIn, Entry, EntryIn
from domain.record.validate import check
from infra.db import Connection, Pool

# FHIR resource type of each kind, as named in the audit trail.
RESOURCE_TYPE = reads.RESOURCE_TYPE


def _kind(entry: EntryIn) -> str:
    kind: str = type(entry).__struct_config__.tag  # type: ignore[assignment]
    return kind


async def check_encounter(conn: Connection, patient_id: uuid.UUID, encounter_id: uuid.UUID | None) -> None:
    if encounter_id is None:
        return
    encounter = await store.head(conn, encounter_id)
    if encounter is None or encounter.kind != "encounter" or encounter.patient_id != patient_id:
        raise InvalidInput("encounter_not_found", "no such encounter for this patient", field="encounter_id")
    if encounter.status == "entered_in_error":
        raise Conflict("encounter_entered_in_error", "that encounter was entered in error")


async def write(
    conn: Connection,
    principal: Principal,
    patient_id: uuid.UUID,
    entry: EntryIn,
    *,
    appointment_id: uuid.UUID | None = None,
    appointment_facility: uuid.UUID | None = None,
    home_facility: uuid.UUID | None = None,
    referral_id: uuid.UUID | None = None,
) -> Entry:
    """Add a new entry (version 1). Callers that already checked access pass `home_facility`.

    `referral_id` links an encounter to the referral it answers (an asynchronous consultation);
    only the server sets it, so a client cannot attach an encounter to someone else's referral."""
    if home_facility is None and appointment_id is None and referral_id is None:
        written = await _write_at_once(conn, principal, patient_id, entry)
        if written is not None:
            return written
    if home_facility is None:
        home_facility = await access.require_can_write_record(conn, principal, patient_id)
    checked = check(entry)
    body = checked.body if referral_id is None else {**checked.body, "referral_id": str(referral_id)}
    encounter_id = None if isinstance(entry, EncounterIn) else entry.encounter_id
    await check_encounter(conn, patient_id, encounter_id)
    return await insert_new(
        conn, principal, patient_id, _kind(entry), body=body, code=checked.code, encounter_id=encounter_id,
        home=home_facility, appointment_id=appointment_id, appointment_facility=appointment_facility,
        effective_at=checked.effective_at,
    )  # fmt: skip


async def _write_at_once(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry: EntryIn) -> Entry | None:
    """The everyday write (a vital, a note: nothing to stamp, no encounter to check) as one
    statement: access, entry and audit. None when it does not apply, or when the role or the
    content is refused: the caller then goes the long way, which refuses in the documented order
    (patient, access, role, content)."""
    kind = _kind(entry)
    if kind == "prescription" or (not isinstance(entry, EncounterIn) and entry.encounter_id is not None):
        return None
    if not access.may_write_record(principal):
        return None
    try:
        checked = check(entry)
    except InvalidInput:
        return None
    return await store.insert_audited(
        conn, principal, patient_id, kind=kind, resource_type=RESOURCE_TYPE[kind], code=checked.code,
        body=checked.body, effective_at=checked.effective_at or datetime.now(UTC),
    )  # fmt: skip


async def insert_new(
    conn: Connection,
    principal: Principal,
    patient_id: uuid.UUID,
    kind: str,
    *,
    body: dict[str, object],
    code: str | None,
    encounter_id: uuid.UUID | None,
    home: uuid.UUID,
    appointment_id: uuid.UUID | None = None,
    appointment_facility: uuid.UUID | None = None,
    effective_at: datetime | None = None,
) -> Entry:
    """Version 1 of a new entry, with its provenance, audited. Callers checked access and content."""
    facility_id = access.authoring_facility(principal, appointment_facility, home)
    if kind == "prescription":  # its code, licence and facility code (domain.prescriptions)
        body = {**body, **await prescriptions.stamp(conn, principal, facility_id)}
    created = await store.insert(
        conn,
        id=uuid.uuid4(),
        version=1,
        patient_id=patient_id,
        kind=kind,
        status="current",
        encounter_id=encounter_id,
        appointment_id=appointment_id,
        code=code,
        body=body,
        effective_at=effective_at or datetime.now(UTC),
        author_user_id=principal.user_id,
        author_role=principal.primary_role,
        facility_id=facility_id,
        channel=principal.channel,
    )
    if kind == "prescription":
        await prescriptions.issue(conn, created)
    await _audit(conn, principal, "create", created)
    return created


async def _locked_head(conn: Connection, principal: Principal, entry_id: uuid.UUID, expected_version: int) -> Entry:
    """The head, locked against concurrent changes; access is checked before the version, so a
    caller who may not write learns nothing about the entry."""
    current = await store.head(conn, entry_id, for_update=True)
    if current is None and await conn.fetchval("SELECT 1 FROM record_entries WHERE id = $1 LIMIT 1", entry_id):
        # We waited for the head while a concurrent change superseded it: lock the new head, so
        # the loser of the race is told of a version conflict, not of a missing entry.
        current = await store.head(conn, entry_id, for_update=True)
    if current is None:
        raise NotFound("entry_not_found", "no such record entry")
    await access.require_can_write_record(conn, principal, current.patient_id)
    if current.version != expected_version:
        raise Conflict(
            "version_conflict",
            f"the entry is now at version {current.version}: read it and apply your change again",
            current_version=current.version,
        )
    if current.status == "entered_in_error":
        raise Conflict("entered_in_error", "the entry was entered in error; record a new one instead")
    return current


async def correct(
    conn: Connection, principal: Principal, entry_id: uuid.UUID, *, expected_version: int, entry: EntryIn, reason: str
) -> Entry:
    """Replace an entry's content by a new version; the old one stays, superseded."""
    current = await _locked_head(conn, principal, entry_id, expected_version)
    if _kind(entry) != current.kind:
        raise InvalidInput("kind_mismatch", f"a correction of a {current.kind} must be a {current.kind}", field="kind")
    checked = check(entry)
    encounter_id = current.encounter_id if isinstance(entry, EncounterIn) else entry.encounter_id
    await check_encounter(conn, current.patient_id, encounter_id)
    return await _new_version(
        conn, principal, current, "current", reason, code=checked.code, body=checked.body,
        effective_at=checked.effective_at, encounter_id=encounter_id,
    )  # fmt: skip


async def mark_entered_in_error(
    conn: Connection, principal: Principal, entry_id: uuid.UUID, *, expected_version: int, reason: str
) -> Entry:
    """Never deleted: a new version says the entry was a mistake, and reads hide it by default."""
    current = await _locked_head(conn, principal, entry_id, expected_version)
    return await _new_version(
        conn, principal, current, "entered_in_error", reason, code=current.code, body=current.body,
        effective_at=current.effective_at, encounter_id=current.encounter_id,
    )  # fmt: skip


async def _new_version(
    conn: Connection, principal: Principal, current: Entry, status: str, reason: str, **content: object
) -> Entry:
    await store.supersede(conn, current.id, current.version)
    if current.kind == "prescription":  # a later version keeps the code, licence and facility code
        content["body"] = prescriptions.carried(current, content["body"])  # type: ignore[arg-type]
    created = await store.insert(
        conn,
        id=current.id,
        version=current.version + 1,
        patient_id=current.patient_id,
        kind=current.kind,
        status=status,
        appointment_id=current.appointment_id,
        author_user_id=principal.user_id,
        author_role=principal.primary_role,
        facility_id=access.authoring_facility(principal, current.provenance.facility_id),
        channel=principal.channel,
        reason=reason,
        **content,
    )
    if created.kind == "prescription" and "prescription_code" in created.body:
        await prescriptions.queue(conn, created)
    await _audit(conn, principal, "correct" if status == "current" else "entered_in_error", created)
    return created


async def _audit(
    conn: Connection,
    principal: Principal,
    action: trail.Action,
    entry: Entry,
    purpose: str | None = None,
    facility_id: uuid.UUID | None = None,
) -> None:
    """Writes name the entry's facility; reads name the reader's (as the patient's access log shows it)."""
    await trail.record(
        conn,
        principal,
        action=action,
        resource_type=RESOURCE_TYPE[entry.kind],
        resource_id=entry.id,
        patient_ids=[entry.patient_id],
        facility_id=facility_id or entry.provenance.facility_id,
        purpose=purpose,
    )


async def refuse(
    pool: Pool,
    principal: Principal,
    patient_id: uuid.UUID,
    *,
    action: trail.Action,
    resource_type: str,
    resource_id: uuid.UUID,
) -> NoReturn:
    """Refuse a record read that found no basis, auditing the refusal (outcome 'refused') on a
    connection of its own: the request's transaction, where reads are audited, rolls back with
    the 403."""
    await trail.record_refused(
        pool, principal, action=action, resource_type=resource_type, resource_id=resource_id,
        patient_id=patient_id, facility_id=access.authoring_facility(principal),
    )  # fmt: skip
    raise access.record_refusal()


async def require_read(
    conn: Connection,
    pool: Pool,
    principal: Principal,
    patient_id: uuid.UUID,
    *,
    action: trail.Action,
    resource_type: str,
    resource_id: uuid.UUID,
) -> access.RecordAccess:
    """access.require_can_read_record, auditing a refusal as refuse does: for the callers that
    check one patient before reading rows of their own (FHIR searches naming a patient)."""
    try:
        return await access.require_can_read_record(conn, principal, patient_id)
    except Forbidden:
        await refuse(pool, principal, patient_id, action=action, resource_type=resource_type, resource_id=resource_id)


async def get(conn: Connection, principal: Principal, entry_id: uuid.UUID, *, pool: Pool) -> Entry:
    found = await reads.entry(conn, principal, entry_id)
    if found is None:
        raise NotFound("entry_not_found", "no such record entry")
    entry, read = found
    if read.basis is None:
        await refuse(
            pool, principal, entry.patient_id, action="read", resource_type=RESOURCE_TYPE[entry.kind],
            resource_id=entry.id,
        )  # fmt: skip
    return entry


async def history(conn: Connection, principal: Principal, entry_id: uuid.UUID, *, pool: Pool) -> list[Entry]:
    entry = await get(conn, principal, entry_id, pool=pool)
    return await store.versions(conn, entry.id)


async def _patient_entries(
    conn: Connection,
    principal: Principal,
    patient_id: uuid.UUID,
    *,
    pool: Pool,
    where: str,
    order: str,
    limit: int,
    params: list[tuple[object, str]],
    patient_read: bool = False,
) -> list[Entry]:
    """A patient's entries, read and audited as a search of their record by reads.patient_entries
    (the trail's purpose is the basis: 'break_glass' flags an emergency read)."""
    read = await reads.patient_entries(
        conn, principal, patient_id, where=where, order=order, limit=limit, params=params, patient_read=patient_read
    )
    if read is None:
        raise NotFound("patient_not_found", "no such patient", field="patient_id")
    if read.basis is None:
        await refuse(pool, principal, patient_id, action="search", resource_type="Record", resource_id=patient_id)
    return read.entries


async def patient_record(
    conn: Connection,
    principal: Principal,
    patient_id: uuid.UUID,
    *,
    pool: Pool,
    kind: str | None = None,
    include_errors: bool = False,
    limit: int = 200,
) -> list[Entry]:
    """The patient's current entries, most recent first."""
    return await _patient_entries(
        conn, principal, patient_id, pool=pool, where="({0} IS NULL OR kind = {0}) AND ({1} OR status = 'current')",
        order="effective_at DESC, seq DESC", limit=limit, params=[(kind, "text"), (include_errors, "boolean")],
    )  # fmt: skip


# Entries of some kinds in change order (seq): a stable keyset for paging and "what changed since".
_SEARCH = """kind = ANY({0}) AND ({1} OR status = 'current')
    AND ({2} IS NULL OR effective_at >= {2}) AND ({3} IS NULL OR effective_at < {3})
    AND ({4} IS NULL OR recorded_at > {4}) AND ({5} IS NULL OR seq > {5})"""


async def search(
    conn: Connection,
    principal: Principal,
    patient_id: uuid.UUID,
    *,
    pool: Pool,
    kinds: list[str],
    include_errors: bool = False,
    effective_from: datetime | None = None,
    effective_to: datetime | None = None,
    recorded_since: datetime | None = None,
    after_seq: int | None = None,
    limit: int = 100,
    patient_read: bool = False,
) -> list[Entry]:
    """The patient's entries of some kinds in change order (FHIR search, $everything, paging by
    seq); with `patient_read`, the Patient's read is audited too (after the search, as
    `everything` reads it)."""
    params: list[tuple[object, str]] = [
        (kinds, "text[]"), (include_errors, "boolean"), (effective_from, "timestamptz"),
        (effective_to, "timestamptz"), (recorded_since, "timestamptz"), (after_seq, "bigint"),
    ]  # fmt: skip
    return await _patient_entries(
        conn, principal, patient_id, pool=pool, where=_SEARCH, order="seq", limit=limit, params=params,
        patient_read=patient_read,
    )  # fmt: skip


async def everything(
    conn: Connection,
    principal: Principal,
    patient_id: uuid.UUID,
    *,
    pool: Pool,
    kinds: list[str],
    after_seq: int | None,
    limit: int,
    recorded_since: datetime | None = None,
) -> tuple[patients.Patient | None, list[Entry]]:
    """FHIR Patient/$everything: the patient's entries in change order and, on the first page
    (`after_seq` None), the patient themself.

    One rule, the record's (RECORD_BASIS): a reader the record is open to (consent and break-glass
    included) also reads the demographics the record is about; the record's read and, on the
    first page, the Patient's are audited together, with the same basis as purpose."""
    first = after_seq is None
    entries = await search(
        conn, principal, patient_id, pool=pool, kinds=kinds, after_seq=after_seq, limit=limit, patient_read=first,
        recorded_since=recorded_since,
    )  # fmt: skip
    if not first:
        return None, entries
    patient = (await patients.load_many(conn, [patient_id]))[patient_id]
    return patient, entries
