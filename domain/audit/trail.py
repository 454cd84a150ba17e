"""Appends audit events in the caller's transaction, so an act and its record commit together;
refusals, which roll that transaction back, are written apart (record_refused). Reads served by
a read-only replica keep their events aside for the caller to write on the primary before it
answers (written_later)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, Literal, TypeAlias

from domain.principal import Principal
from infra.db import Connection, Pool

Action = Literal[
    "read",
    "search",
    "create",
    "update",
    "book",
    "reschedule",
    "cancel",
    "check_in",
    "no_show",
    "start_call",
    "end_call",
    "complete",
    "correct",
    "entered_in_error",
    "export",
    "consent",
    "revoke_consent",
    "break_glass",
    "link_account",  # staff onboarding gave an existing account a role (users.onboard)
    # Guests of a video consultation (domain.invitations): invited by SMS, the link opened by one
    # browser, the guest in the room, the invitation withdrawn.
    "invite",
    "open_invitation",
    "join_call",
    "revoke_invitation",
]


async def record(
    conn: Connection,
    principal: Principal,
    *,
    action: Action,
    resource_type: str,
    resource_id: str | uuid.UUID | None,
    patient_ids: Iterable[uuid.UUID | None],
    facility_id: uuid.UUID | None = None,
    outcome: str = "success",
    purpose: str | None = None,
) -> None:
    """One event per patient touched, so a patient's access log lists every read of their data."""
    patients = list(dict.fromkeys(patient_ids)) or [None]
    event: Event = (
        principal.user_id,
        principal.primary_role,
        facility_id,
        action,
        resource_type,
        None if resource_id is None else str(resource_id),
        purpose,
        principal.channel,
        outcome,
        principal.request_id,
        patients,
    )
    aside = _ASIDE.get()
    if aside is not None and aside[0] is conn:
        aside[1].append(event)
        return
    await conn.execute(_INSERT, *event)


# The parameters of _INSERT: what `record` writes, or keeps aside.
Event: TypeAlias = tuple[Any, ...]
_INSERT = """INSERT INTO audit_events (actor_user_id, actor_role, facility_id, patient_id, action,
                                      resource_type, resource_id, purpose, channel, outcome, request_id)
             SELECT $1, $2, $3, p, $4, $5, $6, $7, $8, $9, $10 FROM unnest($11::uuid[]) AS p"""
_ASIDE: ContextVar[tuple[object, list[Event]] | None] = ContextVar("spean_audit_aside", default=None)


@contextlib.contextmanager
def written_later(conn: Connection) -> Iterator[list[Event]]:
    """Within the block, events `record` is asked to write on `conn` (a read-only replica's) go
    to the yielded list instead; the caller writes them on the primary (`write`) before it
    answers, or answers nothing."""
    kept: list[Event] = []
    token = _ASIDE.set((conn, kept))
    try:
        yield kept
    finally:
        _ASIDE.reset(token)


def kept_aside(conn: Connection) -> bool:
    """Whether events `record` is asked to write on `conn` are kept aside (a replica's): a
    statement that inserts its own audit events cannot run there."""
    aside = _ASIDE.get()
    return aside is not None and aside[0] is conn


async def write(conn: Connection, events: list[Event]) -> None:
    """Write events kept aside by `written_later`."""
    for event in events:
        await conn.execute(_INSERT, *event)


async def record_refused(
    pool: Pool,
    principal: Principal,
    *,
    action: Action,
    resource_type: str,
    resource_id: str | uuid.UUID | None,
    patient_id: uuid.UUID,
    facility_id: uuid.UUID | None = None,
) -> None:
    """A refused access, on its own connection and short transaction: the request's transaction
    rolls back with the refusal, and an audit event written there would vanish with it."""
    async with pool.acquire() as conn, conn.transaction():
        await record(
            conn, principal, action=action, resource_type=resource_type, resource_id=resource_id,
            patient_ids=[patient_id], facility_id=facility_id, outcome="refused",
        )  # fmt: skip


async def record_operator(
    conn: Connection,
    *,
    action: Action,
    resource_type: str,
    resource_id: str | uuid.UUID | None,
    facility_id: uuid.UUID | None = None,
) -> None:
    """An act of an operator at the command line (spean admin): no user, role 'operator'."""
    await conn.execute(
        """INSERT INTO audit_events (actor_user_id, actor_role, facility_id, action, resource_type, resource_id,
                                     channel, outcome)
           VALUES (NULL, 'operator', $1, $2, $3, $4, 'cli', 'success')""",
        facility_id,
        action,
        resource_type,
        None if resource_id is None else str(resource_id),
    )


async def record_guest(
    conn: Connection,
    *,
    action: Action,
    invitation_id: uuid.UUID,
    role: str,
    patient_id: uuid.UUID,
    facility_id: uuid.UUID | None,
    outcome: str = "success",
    request_id: str | None = None,
) -> None:
    """An act of a guest holding an invitation link (no account): no user, role 'guest', the
    invitation's role ('interpreter'...) as the purpose; the patient's access log lists it."""
    await conn.execute(
        """INSERT INTO audit_events (actor_user_id, actor_role, facility_id, patient_id, action, resource_type,
                                     resource_id, purpose, channel, outcome, request_id)
           VALUES (NULL, 'guest', $1, $2, $3, 'ConsultationInvitation', $4, $5, 'web', $6, $7)""",
        facility_id,
        patient_id,
        action,
        str(invitation_id),
        role,
        outcome,
        request_id,
    )


async def record_patient_by_pin(
    conn: Connection,
    *,
    action: Action,
    resource_type: str,
    resource_id: uuid.UUID,
    patient_id: uuid.UUID,
    outcome: str = "success",
    request_id: str | None = None,
) -> None:
    """An act of a patient who proved themselves with their results PIN (no sign-in): no user,
    role 'patient', purpose 'results_pin'; the patient's access log lists it."""
    await conn.execute(
        """INSERT INTO audit_events (actor_user_id, actor_role, facility_id, patient_id, action, resource_type,
                                     resource_id, purpose, channel, outcome, request_id)
           VALUES (NULL, 'patient', NULL, $1, $2, $3, $4, 'results_pin', 'web', $5, $6)""",
        patient_id,
        action,
        resource_type,
        str(resource_id),
        outcome,
        request_id,
    )
