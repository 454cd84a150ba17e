"""A patient registering themself from their own phone (by SMS), the health posts they can name
as theirs, and the CHW of that post who verifies the registration in person.

Who acts: the phone's own login, as the app's first sign-in would make it. The SMS came from the
number, which is what a sign-in code proves too, so the number's login registers the patient
through `patients.register` (the app's self-registration path: the record carries that phone and
is linked to that login, `created_by` is that login, the audit trail says channel `sms`). What the
patient said that the record does not hold (the village) is kept in
`patient_self_registrations`, unverified, for the CHW of the chosen health post to check in
person (`pending`, `verify`: a CHW, clinician or admin of the post, as for registering there).
A phone that belongs to staff cannot self-register: staff register patients in the app.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime

import msgspec

from domain import access, patients
from domain.audit import trail
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.identity import users
from domain.principal import Channel, Principal
from infra.db import Connection

POSTS_SHOWN = 4
PENDING_SHOWN = 200


class SelfRegistration(msgspec.Struct, kw_only=True):
    """A self-registration as its CHW sees it: who, what they said, and whether it was checked."""

    patient_id: uuid.UUID
    name: str
    birth_year: int | None
    phone: str | None
    village: str
    channel: str
    health_post_id: uuid.UUID
    registered_at: datetime
    verified_by: uuid.UUID | None
    verified_at: datetime | None


_SELECT = """SELECT s.patient_id, p.names->0->>'text' AS name, p.birth_year, p.phone, s.village, s.channel,
                    p.home_facility_id AS health_post_id, s.registered_at, s.verified_by, s.verified_at
             FROM patient_self_registrations s JOIN patients p ON p.id = s.patient_id"""


class Post(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str


def fold(text: str) -> str:
    """Case and Latin diacritics ignored (Khmer signs are letters there: kept), spaces squeezed."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFD", text):
        if unicodedata.combining(ch) and out and out[-1].isascii():
            continue
        out.append(ch)
    folded = unicodedata.normalize("NFC", "".join(out)).replace("đ", "d").replace("Đ", "D")
    return " ".join(folded.casefold().split())


async def match_health_posts(conn: Connection, said: str) -> list[Post]:
    """Health posts whose name is what the patient typed (then: contains it), case and Latin
    diacritics ignored. One exact match wins; otherwise up to POSTS_SHOWN for a numbered choice."""
    wanted = fold(said)
    if len(wanted) < 2:
        return []
    rows = await conn.fetch("SELECT id, name FROM facilities WHERE kind = 'health_post' ORDER BY name, id")
    exact = [Post(r["id"], r["name"]) for r in rows if fold(r["name"]) == wanted]
    if exact:
        return exact[:POSTS_SHOWN]
    return [Post(r["id"], r["name"]) for r in rows if wanted in fold(r["name"])][:POSTS_SHOWN]


async def register(
    conn: Connection,
    phone: str,
    *,
    name: str,
    birth_year: int,
    village: str,
    health_post_id: uuid.UUID,
    language: patients.Language,
    channel: Channel,
    default_region: str,
) -> patients.Patient:
    """Register the phone's owner as a patient of `health_post_id` (see the module's rule)."""
    village = village.strip()
    if not 1 <= len(village) <= 200:
        raise InvalidInput("invalid_village", "the village is 1 to 200 characters", field="village")
    if not await conn.fetchval("SELECT 1 FROM facilities WHERE id = $1 AND kind = 'health_post'", health_post_id):
        raise InvalidInput("not_a_health_post", "choose a health post", field="home_facility_id")
    user_id = await users.ensure_user(conn, phone)
    principal = msgspec.structs.replace(await users.load_principal(conn, user_id), channel=channel)
    if principal.is_staff or principal.is_system_admin:
        raise Forbidden("staff_phone", "a health worker's phone cannot register itself as a patient")
    patient = await patients.register(
        conn,
        principal,
        patients.PatientIn(
            names=[patients.HumanName(text=name.strip())],
            home_facility_id=health_post_id,
            birth_year=birth_year,
            phone=phone,
            preferred_language=language,
            preferred_channel="sms" if channel == "sms" else "ussd" if channel == "ussd" else "app",
        ),
        default_region=default_region,
    )
    await conn.execute(
        "INSERT INTO patient_self_registrations (patient_id, channel, village) VALUES ($1, $2, $3)",
        patient.id,
        channel,
        village,
    )
    return patient


async def pending(conn: Connection, principal: Principal, health_post_id: uuid.UUID) -> list[SelfRegistration]:
    """The post's self-registrations not verified yet, oldest first."""
    access.require_patient_registrar(principal, health_post_id)
    rows = await conn.fetch(
        f"""{_SELECT} WHERE p.home_facility_id = $1 AND s.verified_at IS NULL
            ORDER BY s.registered_at, s.patient_id LIMIT $2""",
        health_post_id,
        PENDING_SHOWN,
    )
    found = [SelfRegistration(**dict(r)) for r in rows]
    if found:
        await trail.record(
            conn,
            principal,
            action="search",
            resource_type="Patient",
            resource_id=None,
            patient_ids=[r.patient_id for r in found],
            facility_id=health_post_id,
        )
    return found


async def verify(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> SelfRegistration:
    """A health worker of the patient's post has checked the registration in person."""
    row = await conn.fetchrow(f"{_SELECT} WHERE s.patient_id = $1 FOR UPDATE OF s", patient_id)
    if row is None:
        raise NotFound("self_registration_not_found", "this patient did not register themself")
    access.require_patient_registrar(principal, row["health_post_id"])
    if row["verified_at"] is not None:
        raise Conflict("already_verified", "this registration was already verified")
    await conn.execute(
        "UPDATE patient_self_registrations SET verified_by = $2, verified_at = now() WHERE patient_id = $1",
        patient_id,
        principal.user_id,
    )
    await trail.record(
        conn,
        principal,
        action="update",
        resource_type="Patient",
        resource_id=patient_id,
        patient_ids=[patient_id],
        facility_id=row["health_post_id"],
    )
    updated = await conn.fetchrow(f"{_SELECT} WHERE s.patient_id = $1", patient_id)
    assert updated is not None
    return SelfRegistration(**dict(updated))
