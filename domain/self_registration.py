"""A patient registering themself from their own phone (by SMS), and the health posts they can
name as theirs.

Who acts: the phone's own login, as the app's first sign-in would make it. The SMS came from the
number, which is what a sign-in code proves too, so the number's login registers the patient
through `patients.register` (the app's self-registration path: the record carries that phone and
is linked to that login, `created_by` is that login, the audit trail says channel `sms`). What the
patient said that the record does not hold (the village) is kept in
`patient_self_registrations`, unverified, for the CHW of the chosen health post to check in
person. A phone that belongs to staff cannot self-register: staff register patients in the app.
"""

from __future__ import annotations

import unicodedata
import uuid

import msgspec

from domain import patients
from domain.errors import Forbidden, InvalidInput
from domain.identity import users
from domain.principal import Channel
from infra.db import Connection

POSTS_SHOWN = 4


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
