"""Is this person already registered? The one rule behind registration (every path: app API,
FHIR create, SMS self-registration) and FHIR `Patient/$match`.

Grades, as FHIR's match-grade extension names them:
- certain: the patient holds one of the candidate's identifiers (system and normalised value);
- probable: the same name (folded, trigram similarity >= PROBABLE_NAME), the same birth (date,
  or year where either side knows only the year) and the same phone;
- possible: two of those three, the name compared more loosely (>= POSSIBLE_NAME).
A shared family phone alone, or a common name alone, is never a match.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

import msgspec

from infra.db import Connection

Grade = Literal["certain", "probable", "possible"]
PROBABLE_NAME = 0.8
POSSIBLE_NAME = 0.5
SCORE: dict[Grade, float] = {"certain": 1.0, "probable": 0.9, "possible": 0.6}


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """Who is being registered: identifiers already normalised, names already folded."""

    identifiers: list[tuple[str, str]]
    search_text: str
    birth_date: date | None
    birth_year: int | None
    phone: str | None


class Match(msgspec.Struct, frozen=True):
    patient_id: uuid.UUID
    grade: Grade
    score: float


_FIND = """
WITH ids AS (SELECT * FROM unnest($1::text[], $2::text[]) AS t(system, value)),
     seen AS (
        SELECT x.patient_id AS id FROM patient_identifiers x JOIN ids USING (system, value)
        UNION SELECT p.id FROM patients p WHERE $6::text IS NOT NULL AND p.phone = $6
        UNION SELECT p.id FROM patients p
              WHERE $3 <> '' AND p.search_text % $3
                AND (p.birth_date = $4 OR p.birth_year = $5)
     )
SELECT p.id,
       EXISTS (SELECT 1 FROM patient_identifiers x JOIN ids USING (system, value) WHERE x.patient_id = p.id)
         AS same_id,
       CASE WHEN $3 = '' THEN 0 ELSE similarity(p.search_text, $3) END AS name,
       CASE WHEN p.birth_date IS NOT NULL AND $4::date IS NOT NULL THEN p.birth_date = $4
            ELSE coalesce(p.birth_year = $5, false) END AS same_birth,
       coalesce(p.phone = $6, false) AS same_phone
FROM patients p JOIN seen USING (id)
"""


def _grade(same_id: bool, name: float, same_birth: bool, same_phone: bool) -> Grade | None:
    if same_id:
        return "certain"
    if name >= PROBABLE_NAME and same_birth and same_phone:
        return "probable"
    if sum((name >= POSSIBLE_NAME, same_birth, same_phone)) >= 2:
        return "possible"
    return None


async def find(conn: Connection, candidate: Candidate, *, at_least: Grade = "possible") -> list[Match]:
    """Patients who may be the candidate, best first (ties by id), no weaker than `at_least`."""
    floor = SCORE[at_least]
    rows = await conn.fetch(
        _FIND,
        [s for s, _ in candidate.identifiers],
        [v for _, v in candidate.identifiers],
        candidate.search_text,
        candidate.birth_date,
        candidate.birth_year,
        candidate.phone,
    )
    found: list[Match] = []
    for r in rows:
        grade = _grade(r["same_id"], float(r["name"]), r["same_birth"], r["same_phone"])
        if grade is not None and SCORE[grade] >= floor:
            found.append(Match(r["id"], grade, SCORE[grade]))
    return sorted(found, key=lambda m: (-m.score, m.patient_id))


async def lock(conn: Connection, candidate: Candidate) -> None:
    """Serialise registrations of the same person until commit, so that of two at once the second
    finds the first (and answers 409 with its id) instead of both passing the check: one lock
    per identifier, and one for (name, birth, phone), taken in a fixed order."""
    keys = sorted(
        [f"id|{s}|{v}" for s, v in candidate.identifiers]
        + [f"person|{candidate.search_text}|{candidate.birth_year}|{candidate.phone}"]
    )
    for key in keys:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7011))", key)
