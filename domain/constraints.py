"""What a refusal by the database means to the caller: the one mapping from PostgreSQL's integrity
errors, and from races lost to a concurrent transaction, to domain errors.

The database enforces the invariants that a prior read cannot (one active appointment per
practitioner and per patient at a time, one account per phone, one patient per identifier...),
so a request that loses a race to a concurrent one is refused there. Each channel renders the
domain error this module returns (HTTP at its root, see api.errors), so the same race answers the
same code whichever route or channel it came by. Constraints with a meaning of their own are
named in `NAMED`; any other maps by its kind (unique → 409, missing reference → 404, ...).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import asyncpg

from domain.errors import Conflict, DomainError, InvalidInput, NotFound, Unavailable
from infra.db import RETRYABLE


class Meaning(NamedTuple):
    error: type[DomainError]
    code: str
    detail: str
    field: str | None = None


NAMED: dict[str, Meaning] = {
    "appointments_practitioner_no_overlap": Meaning(
        Conflict, "slot_taken", "that slot was just booked by someone else: pick another", "start"
    ),
    "appointments_patient_no_overlap": Meaning(
        Conflict, "patient_double_booked", "the patient already has a consultation at that time", "start"
    ),
    "patient_identifiers_pkey": Meaning(
        Conflict, "identifier_taken", "another patient already has this identifier", "identifiers"
    ),
    "users_phone_key": Meaning(Conflict, "phone_taken", "this phone number already belongs to an account", "phone"),
    "practitioners_user_id_key": Meaning(
        Conflict, "practitioner_exists", "this phone already belongs to a practitioner: grant a role instead", "phone"
    ),
    "consents_facility_id_fkey": Meaning(InvalidInput, "grantee_not_found", "no such facility", "facility_id"),
    "consents_practitioner_id_fkey": Meaning(
        InvalidInput, "grantee_not_found", "no such practitioner", "practitioner_id"
    ),
    "record_entries_head": Meaning(
        Conflict, "version_conflict", "the entry was changed meanwhile: read it and apply your change again"
    ),
    "record_entries_one_encounter": Meaning(
        Conflict, "encounter_exists", "this consultation already has its encounter", "appointment_id"
    ),
    "sync_applied_pkey": Meaning(Conflict, "duplicate_change", "this change was already applied", "client_id"),
    "idempotency_keys_pkey": Meaning(Conflict, "idempotency_key_in_flux", "retry the request"),
}

# The referenced table of a missing reference names what was not found.
_ENTITY = {
    "appointments": "appointment",
    "facilities": "facility",
    "patients": "patient",
    "practitioners": "practitioner",
    "referrals": "referral",
    "users": "user",
}
_MISSING_KEY = re.compile(r'^Key \((?P<columns>[^)]*)\)=\(.*\) is not present in table "(?P<table>[^"]+)"', re.S)
_RETRYABLE = (*RETRYABLE, asyncpg.LockNotAvailableError)


def domain_error(exc: asyncpg.PostgresError) -> DomainError | None:
    """The domain error for a refusal by the database, or None if it is not one (a bug: 500).

    An `Unavailable` answer means the transaction lost a race it may win if run again whole."""
    if isinstance(exc, _RETRYABLE):
        return Unavailable("concurrent_update", "the request met a concurrent one: send it again", retry_after_s=1)
    if not isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return None
    constraint = exc.constraint_name or ""
    if (meaning := NAMED.get(constraint)) is not None:
        return meaning.error(meaning.code, meaning.detail, field=meaning.field)
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return _missing_reference(exc)
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict("already_exists", "this already exists")
    if isinstance(exc, asyncpg.ExclusionViolationError):
        return Conflict("overlap", "this overlaps with something that exists")
    if isinstance(exc, asyncpg.NotNullViolationError):
        return InvalidInput("missing_field", "a required value is missing", field=exc.column_name)
    if isinstance(exc, asyncpg.CheckViolationError):
        # PostgreSQL names a one-column check <table>_<column>_check.
        column = re.fullmatch(rf"{re.escape(exc.table_name or '')}_(\w+)_check", constraint)
        return InvalidInput("invalid_value", "a value is outside what is allowed", field=column and column[1])
    return Conflict("conflict", "this conflicts with the current state")


def _missing_reference(exc: asyncpg.ForeignKeyViolationError) -> DomainError:
    found = _MISSING_KEY.match(exc.detail or "")
    if found is None:  # the other direction: a row still referenced elsewhere
        return Conflict("still_referenced", "other records still refer to this")
    entity = _ENTITY.get(found["table"])
    field = found["columns"] if "," not in found["columns"] else None
    if entity is None:
        return NotFound("reference_not_found", "a referenced record does not exist", field=field)
    return NotFound(f"{entity}_not_found", f"no such {entity}", field=field)
