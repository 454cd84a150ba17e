"""Who may see and change what: every authorisation rule of the domain, in one place.

- A patient login reaches the patients linked to it (a shared family phone may hold several).
- A CHW, clinician or facility admin reaches the patients whose home facility is theirs.
- A specialist reaches their own schedule and appointments, and the patients booked with them.
- A facility admin also reaches the appointments held at their facility.
- Staff of a reference centre reach the patients referred to it while the referral is open or
  was answered within TREATING_DAYS (REFERRED_HERE).
- A system admin reaches everything (and is audited like everyone else).
- Guests of a video consultation (a family member, an interpreter, a second specialist) are
  invited and revoked by its care team only (may_invite_guests); a guest's link reaches the call,
  never a record (domain.invitations).

The clinical record (entries, not demographics) is stricter; see RECORD_BASIS: a patient reads
their own; a health worker reads it for treatment, with the patient's consent, or by break-glass.
Nobody else, not even a system admin.

The SQL fragments below are the same rules as queries, so lists are filtered in the database.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from domain.errors import Forbidden, NotFound
from domain.principal import Principal, Role
from infra.db import Connection

TREATING_DAYS = 30

# A referral of patient `p` to a facility where user $U works, open or recently answered.
_REFERRED_HERE = f"""SELECT 1 FROM referrals r JOIN memberships m ON m.facility_id = r.to_facility_id
    WHERE r.patient_id = p.id AND m.user_id = {{user}}::uuid
      AND (r.status IN ('requested', 'accepted')
           OR (r.status = 'answered' AND r.updated_at > now() - interval '{TREATING_DAYS} days'))"""

# Placeholders: $1 everything, $2 home facilities, $3 user id, $4 practitioner id, and for
# appointments $5 administered facilities (see patient_args, appointment_args). Queries number
# their own parameters after these.
PATIENT_VISIBLE = f"""(
    $1::boolean
    OR p.home_facility_id = ANY($2::uuid[])
    OR EXISTS (SELECT 1 FROM patient_accounts pa WHERE pa.patient_id = p.id AND pa.user_id = $3::uuid)
    OR ($4::uuid IS NOT NULL AND EXISTS (
        SELECT 1 FROM appointments ap WHERE ap.patient_id = p.id AND ap.practitioner_id = $4::uuid))
    OR EXISTS ({_REFERRED_HERE.format(user="$3")})
)"""

# The patient's own side: their login, a health worker of their home facility, or a system admin.
PATIENT_SIDE = """(
    $1::boolean
    OR p.home_facility_id = ANY($2::uuid[])
    OR EXISTS (SELECT 1 FROM patient_accounts pa WHERE pa.patient_id = p.id AND pa.user_id = $3::uuid)
)"""

APPOINTMENT_VISIBLE = """(
    $1::boolean
    OR p.home_facility_id = ANY($2::uuid[])
    OR EXISTS (SELECT 1 FROM patient_accounts pa WHERE pa.patient_id = a.patient_id AND pa.user_id = $3::uuid)
    OR a.practitioner_id = $4::uuid
    OR a.facility_id = ANY($5::uuid[])
)"""


def patient_args(principal: Principal) -> tuple[object, ...]:
    return (
        principal.is_system_admin,
        list(principal.facilities_with("chw", "clinician", "facility_admin")),
        principal.user_id,
        principal.practitioner_id,
    )


def appointment_args(principal: Principal) -> tuple[object, ...]:
    return (*patient_args(principal), list(principal.facilities_with("facility_admin")))


async def require_can_read_patient(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> uuid.UUID:
    """Return the patient's home facility, or refuse."""
    return await _home_if(
        conn, PATIENT_VISIBLE, patient_args(principal), patient_id, "you may not access this patient's data"
    )


async def require_patient_side(conn: Connection, principal: Principal, patient_id: uuid.UUID, detail: str) -> uuid.UUID:
    """The patient's own side (PATIENT_SIDE) only; return the patient's home facility, or refuse."""
    # PATIENT_SIDE takes no practitioner ($4).
    return await _home_if(conn, PATIENT_SIDE, patient_args(principal)[:3], patient_id, detail)


async def _home_if(
    conn: Connection, rule: str, args: tuple[object, ...], patient_id: uuid.UUID, detail: str
) -> uuid.UUID:
    row = await conn.fetchrow(
        f"SELECT p.home_facility_id, {rule} AS allowed FROM patients p WHERE p.id = ${len(args) + 1}",
        *args,
        patient_id,
    )
    if row is None:
        raise NotFound("patient_not_found", "no such patient", field="patient_id")
    refuse_unless(row["allowed"], detail)
    home: uuid.UUID = row["home_facility_id"]
    return home


def refuse_unless(allowed: bool, detail: str = "you may not access this patient's data") -> None:
    """The refusal of a patient that PATIENT_VISIBLE (or another rule) did not allow."""
    if not allowed:
        raise Forbidden("patient_access_denied", detail)


def may_write_record(principal: Principal) -> bool:
    """The role half of require_can_write_record (the other half is PATIENT_VISIBLE)."""
    return any(principal.has_role(role) for role in CLINICAL_ROLES)


def require_system_admin(principal: Principal) -> None:
    if not principal.is_system_admin:
        raise Forbidden("role_required", "only a system administrator may do this")


def require_facility_admin(principal: Principal, facility_id: uuid.UUID) -> None:
    if not (principal.is_system_admin or principal.has_role("facility_admin", facility_id)):
        raise Forbidden("role_required", "only an administrator of this facility may do this")


def require_patient_registrar(principal: Principal, facility_id: uuid.UUID) -> None:
    """Health workers register patients at their own facility."""
    if principal.is_system_admin:
        return
    if facility_id not in principal.facilities_with("chw", "clinician", "facility_admin"):
        raise Forbidden("role_required", "only a CHW, clinician or admin of this facility may register its patients")


async def require_can_manage_schedule(
    conn: Connection, principal: Principal, practitioner_id: uuid.UUID, facility_id: uuid.UUID | None
) -> None:
    """The practitioner themself, or an admin of a facility they work at."""
    facilities = {
        r["facility_id"]
        for r in await conn.fetch(
            """SELECT m.facility_id FROM practitioners p JOIN memberships m ON m.user_id = p.user_id
               WHERE p.id = $1 AND m.role IN ('specialist', 'clinician')""",
            practitioner_id,
        )
    }
    exists = facilities or await conn.fetchval("SELECT 1 FROM practitioners WHERE id = $1", practitioner_id)
    if not exists:
        raise NotFound("practitioner_not_found", "no such practitioner", field="practitioner_id")
    if facility_id is not None and facility_id not in facilities:
        raise Forbidden("not_a_member", "the practitioner does not consult at this facility", field="facility_id")
    if principal.is_system_admin or principal.practitioner_id == practitioner_id:
        return
    admin_of = principal.facilities_with("facility_admin")
    if (facility_id is not None and facility_id in admin_of) or (facility_id is None and facilities & admin_of):
        return
    raise Forbidden("schedule_access_denied", "only the practitioner or their facility admin may change this")


def may_invite_guests(
    principal: Principal,
    *,
    practitioner_id: uuid.UUID,
    booked_by: uuid.UUID,
    facility_id: uuid.UUID,
    home_facility_id: uuid.UUID,
) -> bool:
    """Who invites guests (a family member, an interpreter, a second specialist) into a video
    consultation, and revokes them: its specialist, the health worker who booked it, or a CHW or
    clinician of the consultation's facility or of the patient's home facility (who sits beside
    the patient). Not the patient's login, not a facility or system admin: inviting someone into
    a clinical conversation is an act of care."""
    if principal.practitioner_id is not None and principal.practitioner_id == practitioner_id:
        return True
    if principal.user_id == booked_by and principal.is_staff:
        return True
    return bool(principal.facilities_with("chw", "clinician") & {facility_id, home_facility_id})


# Roles that write clinical data. A facility admin manages staff and the network, not care.
CLINICAL_ROLES: tuple[Role, ...] = ("chw", "clinician", "specialist")


async def require_can_write_record(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> uuid.UUID:
    """A health worker in a clinical role who may see the patient writes to their record.

    Returns the patient's home facility."""
    home = await require_can_read_patient(conn, principal, patient_id)
    if not may_write_record(principal):
        raise Forbidden("role_required", "only a CHW, clinician or specialist writes to the record")
    return home


def authoring_facility(principal: Principal, *preferred: uuid.UUID | None) -> uuid.UUID | None:
    """The facility an entry is recorded from: the first of `preferred` (the consultation's
    facility, then the patient's home facility) where the author holds a clinical role, else the
    author's own clinical facility (the lowest id, so the choice is stable)."""
    mine = principal.facilities_with(*CLINICAL_ROLES)
    for facility in preferred:
        if facility in mine:
            return facility
    return min(mine) if mine else None


# Why may the caller read this patient's clinical record? NULL means they may not.
# Placeholders: $1 the caller's clinical facilities, $2 user id, $3 practitioner id; `p` is the patient.
#   self        the patient's own login (or a shared family phone linked to them)
#   treatment   a CHW/clinician/specialist of the patient's home facility, the practitioner of
#               a consultation with the patient that is open or ended within TREATING_DAYS, or
#               staff of a centre the patient was referred to (REFERRED_HERE): referring implies
#               consent to share the record with the centre that will treat

#   consent     an active consent naming the caller (practitioner), a facility where the caller
#               works (facility), or the referral network of the consent's facility, meaning that
#               facility and the reference centres it refers to (network)
#   break_glass an unexpired break-glass grant of the caller for this patient
RECORD_BASIS = f"""(CASE
    WHEN EXISTS (SELECT 1 FROM patient_accounts pa WHERE pa.patient_id = p.id AND pa.user_id = $2::uuid)
        THEN 'self'
    WHEN p.home_facility_id = ANY($1::uuid[])
      OR ($3::uuid IS NOT NULL AND EXISTS (
            SELECT 1 FROM appointments ap WHERE ap.patient_id = p.id AND ap.practitioner_id = $3::uuid
              AND (ap.status IN ('booked', 'checked_in', 'in_progress')
                   OR (ap.status = 'completed' AND ap.updated_at > now() - interval '{TREATING_DAYS} days'))))
      OR EXISTS ({_REFERRED_HERE.format(user="$2")})
        THEN 'treatment'
    WHEN EXISTS (
            SELECT 1 FROM consents c WHERE c.patient_id = p.id AND c.revoked_at IS NULL
              AND (c.expires_at IS NULL OR c.expires_at > now())
              AND ((c.scope = 'practitioner' AND c.practitioner_id = $3::uuid)
                   OR (c.scope IN ('facility', 'network') AND c.facility_id = ANY($1::uuid[]))
                   OR (c.scope = 'network' AND EXISTS (
                        SELECT 1 FROM referral_links rl
                        WHERE rl.from_facility_id = c.facility_id AND rl.to_facility_id = ANY($1::uuid[])))))
        THEN 'consent'
    WHEN EXISTS (SELECT 1 FROM break_glass_grants bg
                 WHERE bg.patient_id = p.id AND bg.user_id = $2::uuid AND bg.expires_at > now())
        THEN 'break_glass'
END)"""


def record_args(principal: Principal) -> tuple[object, ...]:
    return (list(principal.facilities_with(*CLINICAL_ROLES)), principal.user_id, principal.practitioner_id)


class RecordAccess(NamedTuple):
    home_facility_id: uuid.UUID
    basis: str  # self | treatment | consent | break_glass: the audit trail's purpose of the read


async def require_can_read_record(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> RecordAccess:
    """Reading clinical entries: allowed on one of the bases of RECORD_BASIS, else consent_required."""
    row = await conn.fetchrow(
        f"SELECT p.home_facility_id, {RECORD_BASIS} AS basis FROM patients p WHERE p.id = $4",
        *record_args(principal),
        patient_id,
    )
    if row is None:
        raise NotFound("patient_not_found", "no such patient", field="patient_id")
    if row["basis"] is None:
        raise record_refusal()
    return RecordAccess(row["home_facility_id"], row["basis"])


def record_refusal() -> Forbidden:
    """The answer to a record read on no basis of RECORD_BASIS."""
    return Forbidden(
        "consent_required",
        "the patient has not consented to you reading their record; in an emergency, use break-glass access",
    )
