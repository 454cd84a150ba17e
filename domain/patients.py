"""Patients: registered by a health worker at their facility, or by themself from a phone."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Literal

import asyncpg
import msgspec

from domain import access, name_fold
from domain.audit import trail
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.fields import Code, Int32, Phone, ShortText
from domain.identifiers import matching, systems
from domain.phone import normalize
from domain.principal import Principal
from infra.db import Connection

Language = Literal["km", "vi", "fr", "en"]
PatientChannel = Literal["app", "sms", "ussd"]
Sex = Literal["female", "male", "other", "unknown"]


class HumanName(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A name in any script; `lang` tags the script or language (e.g. km, km-Latn, vi)."""

    text: ShortText
    family: ShortText | None = None
    given: Annotated[list[ShortText], msgspec.Meta(max_length=10)] = []
    use: Literal["official", "usual", "nickname", "maiden"] = "official"
    lang: Code | None = None


class Identifier(msgspec.Struct, frozen=True):
    system: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class PatientIn(msgspec.Struct, kw_only=True):
    names: Annotated[list[HumanName], msgspec.Meta(max_length=10)]
    home_facility_id: uuid.UUID
    birth_date: date | None = None
    birth_year: Int32 | None = None
    sex: Sex = "unknown"
    phone: Phone | None = None
    preferred_language: Language = "km"
    preferred_channel: PatientChannel = "sms"
    identifiers: Annotated[list[Identifier], msgspec.Meta(max_length=20)] = []
    # A probable duplicate (same name, birth and phone: domain.identifiers.matching) is refused
    # unless the registrar checked that it is another person (twins named alike, say).
    confirm_not_duplicate: bool = False


class PatientPatch(msgspec.Struct, kw_only=True):
    names: Annotated[list[HumanName], msgspec.Meta(max_length=10)] | None = None
    birth_date: date | None = None
    birth_year: Int32 | None = None
    sex: Sex | None = None
    phone: Phone | None = None
    preferred_language: Language | None = None
    preferred_channel: PatientChannel | None = None
    identifiers: Annotated[list[Identifier], msgspec.Meta(max_length=20)] | None = None


class Patient(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    names: list[HumanName]
    birth_date: date | None
    birth_year: int | None
    sex: Sex | None
    phone: str | None
    preferred_language: Language
    preferred_channel: PatientChannel
    home_facility_id: uuid.UUID
    identifiers: list[Identifier]
    created_at: datetime
    updated_at: datetime
    version: int


# Names and identifiers come as JSON text and are decoded straight into their Structs (one C pass):
# decoding jsonb into dicts and converting those cost ~10 µs a patient, a tenth of a sync page.
_SELECT = """SELECT p.id, p.names::text AS names, p.birth_date, p.birth_year, p.sex, p.phone, p.preferred_language,
                    p.preferred_channel, p.home_facility_id, p.created_at, p.updated_at, p.version,
                    coalesce(jsonb_agg(jsonb_build_object('system', i.system, 'value', i.value)
                                       ORDER BY i.system, i.value) FILTER (WHERE i.system IS NOT NULL), '[]')::text
                      AS identifiers
             FROM patients p LEFT JOIN patient_identifiers i ON i.patient_id = p.id"""
ROWS = _SELECT  # the rows from_row reads, for readers elsewhere (a bulk export streams them)
_NAMES = msgspec.json.Decoder(list[HumanName])
_IDENTIFIERS = msgspec.json.Decoder(list[Identifier])


def from_row(row: asyncpg.Record) -> Patient:
    """A patient from a row of the shape `_SELECT` reads (also patient_history's past versions)."""
    return Patient(
        id=row["id"],
        names=_NAMES.decode(row["names"]),
        birth_date=row["birth_date"],
        birth_year=row["birth_year"],
        sex=row["sex"],
        phone=row["phone"],
        preferred_language=row["preferred_language"],
        preferred_channel=row["preferred_channel"],
        home_facility_id=row["home_facility_id"],
        identifiers=_IDENTIFIERS.decode(row["identifiers"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


def _fold(text: str) -> str:
    """Search form (domain.name_fold): Khmer as written, Latin and Vietnamese without case or accents."""
    return name_fold.fold(text)


def search_text_of(names: list[HumanName]) -> str:
    parts: list[str] = []
    for name in names:
        parts.append(name.text)
        if name.family:
            parts.append(name.family)
        parts.extend(name.given)
    return _fold(" ".join(parts))


def _check_names(names: list[HumanName]) -> None:
    if not names:
        raise InvalidInput("name_required", "give at least one name", field="names")
    for i, name in enumerate(names):
        if not 1 <= len(name.text.strip()) <= 200:
            raise InvalidInput("invalid_name", "a name is 1 to 200 characters", field=f"names[{i}].text")


def _check_birth(birth_date: date | None, birth_year: int | None) -> int | None:
    today = datetime.now(UTC).date()
    if birth_date is not None:
        if birth_date > today:
            raise InvalidInput("birth_date_in_future", "the birth date is in the future", field="birth_date")
        if birth_date.year < 1880:
            raise InvalidInput("out_of_range", "the birth date is too far in the past", field="birth_date")
        if birth_year is not None and birth_year != birth_date.year:
            raise InvalidInput("birth_year_mismatch", "birth_year differs from birth_date", field="birth_year")
        return birth_date.year
    if birth_year is not None and not 1880 <= birth_year <= today.year:
        raise InvalidInput("out_of_range", f"birth_year is 1880 to {today.year}", field="birth_year")
    return birth_year


def _check_identifiers(identifiers: list[Identifier], birth_year: int | None, sex: str | None) -> list[Identifier]:
    """Identifiers as stored: configured national systems validated and normalised
    (domain.identifiers.systems), others trimmed; one value per configured system."""
    registry = systems.registry()
    person = systems.Person(birth_year=birth_year, sex=sex)
    checked: list[Identifier] = []
    for i, ident in enumerate(identifiers):
        if not 1 <= len(ident.system) <= 200 or not 1 <= len(ident.value) <= 100:
            raise InvalidInput(
                "invalid_identifier", "system is 1-200 and value 1-100 characters", field=f"identifiers[{i}]"
            )
        value = registry.validate(ident.system, ident.value, person, f"identifiers[{i}].value")
        if not value:
            raise InvalidInput("invalid_identifier", "the value is empty", field=f"identifiers[{i}].value")
        if ident.system in registry.by_uri and any(c.system == ident.system for c in checked):
            raise InvalidInput(
                "duplicate_identifier_system", "one value per national identifier system",
                field=f"identifiers[{i}]", system=ident.system,
            )  # fmt: skip
        checked.append(Identifier(ident.system, value))
    return checked


async def refuse_duplicate(
    conn: Connection, principal: Principal, candidate: matching.Candidate, *, allow_probable: bool
) -> None:
    """409 `duplicate_patient` if the person is already registered (certain, or probable unless
    the registrar confirmed otherwise), naming the existing patient when the caller may see them."""
    await matching.lock(conn, candidate)
    found = await matching.find(conn, candidate, at_least="probable")
    blocking = [m for m in found if m.grade == "certain" or not allow_probable]
    if not blocking:
        return
    match = blocking[0]
    visible = await conn.fetchval(
        f"SELECT {access.PATIENT_VISIBLE} FROM patients p WHERE p.id = $5",
        *access.patient_args(principal),
        match.patient_id,
    )
    extra: dict[str, object] = {"match_grade": match.grade}
    if visible:
        extra["existing_patient_id"] = str(match.patient_id)
    detail = (
        "a patient with this identifier is already registered"
        if match.grade == "certain"
        else "a patient with the same name, birth and phone is already registered"
        " (send confirm_not_duplicate if this is another person)"
    )
    if visible:  # FHIR's OperationOutcome has no `extra`: its diagnostics name the patient too
        detail += f": Patient/{match.patient_id}"
    raise Conflict("duplicate_patient", detail, field="identifiers" if match.grade == "certain" else None, **extra)


async def _save_identifiers(conn: Connection, patient_id: uuid.UUID, identifiers: list[Identifier]) -> None:
    # An identifier another patient holds is refused by the primary key (domain.constraints: 409
    # identifier_taken), also when two registrations race for it.
    await conn.executemany(
        "INSERT INTO patient_identifiers (patient_id, system, value) VALUES ($1, $2, $3)",
        [(patient_id, i.system, i.value) for i in identifiers],
    )


async def register(conn: Connection, principal: Principal, data: PatientIn, *, default_region: str) -> Patient:
    """A health worker registers a patient of their facility; a login without staff roles registers
    itself (or a family member) and is linked to the new record."""
    _check_names(data.names)
    birth_year = _check_birth(data.birth_date, data.birth_year)
    identifiers = _check_identifiers(data.identifiers, birth_year, data.sex)
    if not await conn.fetchval("SELECT 1 FROM facilities WHERE id = $1", data.home_facility_id):
        raise NotFound("facility_not_found", "no such facility", field="home_facility_id")
    self_registration = not principal.is_staff and not principal.is_system_admin
    if self_registration:
        phone = await conn.fetchval("SELECT phone FROM users WHERE id = $1", principal.user_id)
        if data.phone is not None and normalize(data.phone, default_region) != phone:
            raise Forbidden("phone_mismatch", "register with the phone you signed in with", field="phone")
    else:
        access.require_patient_registrar(principal, data.home_facility_id)
        phone = normalize(data.phone, default_region) if data.phone else None
    candidate = matching.Candidate(
        identifiers=[(i.system, i.value) for i in identifiers], search_text=search_text_of(data.names),
        birth_date=data.birth_date, birth_year=birth_year, phone=phone,
    )  # fmt: skip
    await refuse_duplicate(conn, principal, candidate, allow_probable=data.confirm_not_duplicate)
    patient_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO patients (id, names, search_text, birth_date, birth_year, sex, phone, preferred_language,
                                 preferred_channel, home_facility_id, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        patient_id,
        msgspec.to_builtins(data.names),
        search_text_of(data.names),
        data.birth_date,
        birth_year,
        data.sex,
        phone,
        data.preferred_language,
        data.preferred_channel,
        data.home_facility_id,
        principal.user_id,
    )
    await _save_identifiers(conn, patient_id, identifiers)
    # Whoever signs in with the patient's phone acts for them (see identity.users.login).
    await conn.execute(
        """INSERT INTO patient_accounts (user_id, patient_id)
           SELECT id, $1 FROM users WHERE phone = $2 ON CONFLICT DO NOTHING""",
        patient_id,
        phone,
    )
    patient = await _load(conn, patient_id)
    await trail.record(
        conn,
        principal,
        action="create",
        resource_type="Patient",
        resource_id=patient_id,
        patient_ids=[patient_id],
        facility_id=data.home_facility_id,
    )
    return patient


async def _move_logins(conn: Connection, patient_id: uuid.UUID, old: str | None, new: str | None) -> None:
    """A patient's logins follow their phone (owning the number is what sign-in proves): the old
    number's login no longer acts for them (a lost phone, a recycled SIM), the new one's does."""
    await conn.execute(
        """DELETE FROM patient_accounts pa USING users u
           WHERE pa.patient_id = $1 AND pa.user_id = u.id AND u.phone = $2""",
        patient_id,
        old,
    )
    await conn.execute(
        """INSERT INTO patient_accounts (user_id, patient_id)
           SELECT id, $1 FROM users WHERE phone = $2 ON CONFLICT DO NOTHING""",
        patient_id,
        new,
    )


async def load_many(conn: Connection, patient_ids: list[uuid.UUID]) -> dict[uuid.UUID, Patient]:
    """Patients by id, for callers that already decided the reader may see them (offline sync)."""
    rows = await conn.fetch(f"{_SELECT} WHERE p.id = ANY($1::uuid[]) GROUP BY p.id", patient_ids)
    return {r["id"]: from_row(r) for r in rows}


async def _load(conn: Connection, patient_id: uuid.UUID) -> Patient:
    row = await conn.fetchrow(f"{_SELECT} WHERE p.id = $1 GROUP BY p.id", patient_id)
    if row is None:
        raise NotFound("patient_not_found", "no such patient")
    return from_row(row)


async def get(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> Patient:
    await access.require_can_read_patient(conn, principal, patient_id)
    patient = await _load(conn, patient_id)
    await trail.record(
        conn,
        principal,
        action="read",
        resource_type="Patient",
        resource_id=patient_id,
        patient_ids=[patient_id],
        facility_id=patient.home_facility_id,
    )
    return patient


class PatientQuery(msgspec.Struct, kw_only=True):
    identifier: str | None = None  # "system|value", or a bare value in any system
    phone: str | None = None
    name: str | None = None
    facility_id: uuid.UUID | None = None
    after: uuid.UUID | None = None
    limit: int = 50


async def search(conn: Connection, principal: Principal, query: PatientQuery, *, default_region: str) -> list[Patient]:
    system = value = None
    if query.identifier is not None:
        system, sep, value = query.identifier.rpartition("|")
        if not value:
            raise InvalidInput("invalid_identifier", "use system|value or a value", field="identifier")
        system = system if sep else None
        value = systems.registry().normalise(system, value) if system else value.strip()
    phone = normalize(query.phone, default_region) if query.phone else None
    name = _fold(query.name.strip()) if query.name else None
    if name is not None and len(name) < 2:
        raise InvalidInput("query_too_short", "search by at least 2 characters of a name", field="name")
    pattern = None if name is None else "%" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await conn.fetch(
        f"""{_SELECT} WHERE {access.PATIENT_VISIBLE}
              AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM patient_identifiers x WHERE x.patient_id = p.id
                                               AND x.value = $5 AND ($6::text IS NULL OR x.system = $6)))
              AND ($7::text IS NULL OR p.phone = $7)
              AND ($8::text IS NULL OR p.search_text LIKE $8)
              AND ($9::uuid IS NULL OR p.home_facility_id = $9)
              AND ($10::uuid IS NULL OR p.id > $10)
            GROUP BY p.id ORDER BY p.id LIMIT $11""",
        *access.patient_args(principal),
        value,
        system,
        phone,
        pattern,
        query.facility_id,
        query.after,
        query.limit,
    )
    found = [from_row(r) for r in rows]
    if found:
        await trail.record(
            conn,
            principal,
            action="search",
            resource_type="Patient",
            resource_id=None,
            patient_ids=[p.id for p in found],
        )
    return found


async def update(
    conn: Connection,
    principal: Principal,
    patient_id: uuid.UUID,
    patch: PatientPatch,
    *,
    default_region: str,
    expected_version: int | None = None,
) -> Patient:
    await access.require_can_read_patient(conn, principal, patient_id)
    current = await _load(conn, patient_id)
    if expected_version is not None and expected_version != current.version:
        raise Conflict("version_mismatch", f"the record changed (now version {current.version}): reload it")
    names = patch.names if patch.names is not None else current.names
    _check_names(names)
    birth_date = patch.birth_date if patch.birth_date is not None else current.birth_date
    birth_year = _check_birth(
        birth_date,
        patch.birth_year
        if patch.birth_year is not None
        else (None if patch.birth_date is not None else current.birth_year),
    )
    phone = normalize(patch.phone, default_region) if patch.phone else current.phone
    # The version is checked again by the write itself: two edits made against the same version
    # queue on the row, and the second then finds the version moved on (no lost update).
    updated = await conn.fetchval(
        """UPDATE patients SET names = $2, search_text = $3, birth_date = $4, birth_year = $5, sex = $6,
                  phone = $7, preferred_language = $8, preferred_channel = $9, updated_at = now(),
                  version = version + 1
           WHERE id = $1 AND ($10::int IS NULL OR version = $10) RETURNING version""",
        patient_id,
        msgspec.to_builtins(names),
        search_text_of(names),
        birth_date,
        birth_year,
        patch.sex or current.sex,
        phone,
        patch.preferred_language or current.preferred_language,
        patch.preferred_channel or current.preferred_channel,
        expected_version,
    )
    if updated is None:
        raise Conflict("version_mismatch", "the record changed meanwhile: reload it")
    if phone != current.phone:
        await _move_logins(conn, patient_id, current.phone, phone)
    if patch.identifiers is not None:
        identifiers = _check_identifiers(patch.identifiers, birth_year, patch.sex or current.sex)
        await conn.execute("DELETE FROM patient_identifiers WHERE patient_id = $1", patient_id)
        await _save_identifiers(conn, patient_id, identifiers)
    patient = await _load(conn, patient_id)
    await trail.record(
        conn,
        principal,
        action="update",
        resource_type="Patient",
        resource_id=patient_id,
        patient_ids=[patient_id],
        facility_id=patient.home_facility_id,
    )
    return patient
