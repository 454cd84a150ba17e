"""Work lists: a reference centre's triage queue (most urgent first, then longest waiting), a
health post's referrals with their status, and the answers waiting at the post (the centre
answered; nobody at the post has acknowledged it yet)."""

from __future__ import annotations

import uuid

from domain import access
from domain.audit import trail
from domain.errors import Forbidden
from domain.principal import Principal
from domain.referral.service import ANSWERED, TRIAGE_ROLES, Referral, ReferralStatus, to_referral
from infra.db import Connection


async def _audited(conn: Connection, principal: Principal, facility_id: uuid.UUID, items: list[Referral]) -> None:
    if items:
        await trail.record(
            conn,
            principal,
            action="search",
            resource_type="ServiceRequest",
            resource_id=None,
            patient_ids=[r.patient_id for r in items],
            facility_id=facility_id,
        )


async def triage_queue(conn: Connection, principal: Principal, facility_id: uuid.UUID, *, limit: int) -> list[Referral]:
    if not (principal.is_system_admin or any(principal.has_role(r, facility_id) for r in TRIAGE_ROLES)):
        raise Forbidden("role_required", "only the centre's clinical staff or admin see its triage queue")
    rows = await conn.fetch(
        """SELECT * FROM referrals WHERE to_facility_id = $1 AND status = 'requested'
           ORDER BY urgency_rank, created_at LIMIT $2""",
        facility_id,
        limit,
    )
    items = [to_referral(r) for r in rows]
    await _audited(conn, principal, facility_id, items)
    return items


async def sent(
    conn: Connection,
    principal: Principal,
    facility_id: uuid.UUID,
    *,
    status: ReferralStatus | None,
    limit: int,
    waiting: bool = False,
) -> list[Referral]:
    """A health post's referrals, newest first; `status` narrows (e.g. the open ones: requested);
    `waiting` keeps the answers waiting (answered by the centre, not yet acknowledged at the post),
    oldest answer first, so the longest-waiting is read first."""
    if not (
        principal.is_system_admin or facility_id in principal.facilities_with(*access.CLINICAL_ROLES, "facility_admin")
    ):
        raise Forbidden("role_required", "only the facility's staff see its referrals")
    rows = await conn.fetch(
        """SELECT * FROM referrals WHERE from_facility_id = $1 AND ($2::text IS NULL OR status = $2)
             AND (NOT $4::boolean OR (status = ANY($5::text[]) AND outcome_seen_at IS NULL))
           ORDER BY CASE WHEN $4::boolean THEN triaged_at END, created_at DESC LIMIT $3""",
        facility_id,
        status,
        limit,
        waiting,
        list(ANSWERED),
    )
    items = [to_referral(r) for r in rows]
    await _audited(conn, principal, facility_id, items)
    return items


async def for_patient(
    conn: Connection,
    principal: Principal,
    patient_id: uuid.UUID,
    *,
    statuses: list[ReferralStatus] | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[Referral]:
    """A patient's referrals that the caller may read one by one (the same rule as
    service.get: staff of the referring facility or of the centre), oldest first."""
    staff = list(principal.facilities_with(*access.CLINICAL_ROLES, "facility_admin"))
    rows = await conn.fetch(
        """SELECT * FROM referrals WHERE patient_id = $1
             AND ($2::boolean OR from_facility_id = ANY($3::uuid[]) OR to_facility_id = ANY($3::uuid[]))
             AND ($4::text[] IS NULL OR status = ANY($4::text[]))
             AND ($5::uuid IS NULL OR (created_at, id) > (SELECT created_at, id FROM referrals WHERE id = $5))
           ORDER BY created_at, id LIMIT $6""",
        patient_id,
        principal.is_system_admin,
        staff,
        statuses,
        after,
        limit,
    )
    items = [to_referral(r) for r in rows]
    if items:
        await trail.record(
            conn, principal, action="search", resource_type="ServiceRequest", resource_id=None,
            patient_ids=[patient_id],
        )  # fmt: skip
    return items
