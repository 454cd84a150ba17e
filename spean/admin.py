"""Operator tasks run by the CLI beside the server (same database, same signing key)."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg

from domain import name_fold
from domain.audit import chain, trail
from domain.errors import Conflict, InvalidInput, NotFound
from domain.identity import users
from domain.identity.tokens import issue_access_token
from domain.phone import normalize
from infra import db, pooling
from infra.config import Pooler, Settings


async def create_user(
    database_url: str,
    settings: Settings,
    *,
    phone: str,
    role: str,
    facility: str | None,
    name: str | None,
    link_existing: bool = False,
) -> str:
    """Create an account with a role. A phone already in use (an account, or a registered patient's)
    is refused with phone_in_use unless `link_existing`: then the account keeps its name and its
    other roles and gains this one (users.onboard), and the link is audited."""
    e164 = normalize(phone, settings.default_region)
    facility_id = _facility_id(facility) if facility else None
    if role not in ("system_admin",) and facility_id is None:
        raise InvalidInput("facility_required", f"--facility is required for role {role}", field="facility")
    conn = await pooling.connect(database_url, settings.db_pooler)
    try:
        await db.init_connection(conn)
        async with conn.transaction():
            if facility_id is not None and not await conn.fetchval(
                "SELECT 1 FROM facilities WHERE id = $1", facility_id
            ):
                raise InvalidInput("facility_not_found", f"no facility {facility_id}", field="facility")
            if role == "patient":
                assert facility_id is not None
                return await _patient_login(conn, e164, facility_id, name, link_existing=link_existing)
            user_id, linked = await users.onboard(conn, e164, name, link_existing=link_existing)
            if role == "system_admin":
                await conn.execute("UPDATE users SET is_system_admin = true WHERE id = $1", user_id)
            else:
                assert facility_id is not None
                await users.grant_role(conn, user_id, facility_id, role)  # type: ignore[arg-type]
                if role != "facility_admin":
                    await conn.execute(
                        """INSERT INTO practitioners (id, user_id, name) VALUES ($1, $2, $3)
                           ON CONFLICT (user_id) DO NOTHING""",
                        uuid.uuid4(),
                        user_id,
                        name or e164,
                    )
            if linked:
                await trail.record_operator(
                    conn, action="link_account", resource_type="User", resource_id=user_id, facility_id=facility_id
                )
        kept = " (an existing account: its name and other roles are kept)" if linked else ""
        return f"user {user_id} ({e164}) is {role}" + (f" at {facility_id}" if facility_id else "") + kept
    finally:
        await conn.close()


async def _patient_login(
    conn: asyncpg.Connection, phone: str, facility_id: uuid.UUID, name: str | None, *, link_existing: bool
) -> str:
    """A login for the patients registered with `phone` (as its first sign-in would make), with a
    new patient record when none is registered yet."""
    user_id: uuid.UUID | None = await conn.fetchval("SELECT id FROM users WHERE phone = $1", phone)
    if user_id is not None:
        acts_for = await conn.fetch("SELECT patient_id FROM patient_accounts WHERE user_id = $1", user_id)
        if acts_for:
            ids = ", ".join(str(r["patient_id"]) for r in acts_for)
            return f"user {user_id} ({phone}) already acts for patient {ids}; nothing changed"
        if not link_existing:
            raise Conflict(
                "phone_in_use",
                "this phone already signs in to Spean; pass --link-existing to make that account a patient login too",
                field="phone",
            )
        await trail.record_operator(
            conn, action="link_account", resource_type="User", resource_id=user_id, facility_id=facility_id
        )
    if not await conn.fetchval("SELECT 1 FROM patients WHERE phone = $1 LIMIT 1", phone):
        display = name or phone
        await conn.execute(
            """INSERT INTO patients (id, names, search_text, phone, home_facility_id)
               VALUES ($1, $2, $3, $4, $5)""",
            uuid.uuid4(),
            [{"text": display}],
            name_fold.fold(display),
            phone,
            facility_id,
        )
    created = user_id is None
    user_id = await users.login(conn, phone)  # links every patient registered with this phone
    assert user_id is not None
    if created and name:  # a name for the account just made; an existing one keeps its own
        await conn.execute("UPDATE users SET display_name = $2 WHERE id = $1", user_id, name)
    ids = ", ".join(
        str(r["patient_id"])
        for r in await conn.fetch("SELECT patient_id FROM patient_accounts WHERE user_id = $1", user_id)
    )
    return f"user {user_id} ({phone}) acts for patient {ids}"


def _facility_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(
            "invalid_facility", f"--facility must be a facility id, not {value!r}", field="facility"
        ) from None


async def issue_token(database_url: str, settings: Settings, secret_key: str, *, phone: str, ttl_s: int | None) -> str:
    e164 = normalize(phone, settings.default_region)
    conn = await pooling.connect(database_url, settings.db_pooler)
    try:
        async with conn.transaction():
            # What signing in with this phone would give: a registered patient's first token too.
            user_id = await users.login(conn, e164)
            if user_id is None:
                raise NotFound("user_not_found", f"no account or registered patient with phone {e164}", field="phone")
            principal = await users.load_principal(conn, user_id)
    finally:
        await conn.close()
    return issue_access_token(principal, secret_key, ttl_s or settings.access_token_ttl_s)


async def seal_audit(database_url: str, *, pooler: Pooler = "none") -> str:
    conn = await pooling.connect(database_url, pooler)
    try:
        return f"sealed {await chain.seal(conn)} audit event(s)"
    finally:
        await conn.close()


async def verify_audit(database_url: str, *, seal_first: bool, pooler: Pooler = "none") -> tuple[bool, str]:
    """Seal what has committed (unless told not to), then recompute the whole chain."""
    conn = await pooling.connect(database_url, pooler)
    try:
        if seal_first:
            await chain.seal(conn)
        verdict = await chain.verify(conn)
    finally:
        await conn.close()
    summary = (
        f"{verdict.sealed} sealed event(s), {verdict.unsealed} not yet sealed; "
        f"head {verdict.head_seq} {verdict.head_hash}"
    )
    if verdict.ok:
        return True, f"audit chain intact: {summary}"
    return False, f"audit chain BROKEN at event {verdict.problem_id}: {verdict.problem} ({summary})"


async def list_notifications(database_url: str, *, state: str | None, limit: int, pooler: Pooler = "none") -> str:
    """One line per notification, newest change first: the dead letters with --failed."""
    from domain.notifications import listing

    conn = await pooling.connect(database_url, pooler)
    try:
        await db.init_connection(conn)
        rows = await listing(conn, state=state, limit=limit)  # type: ignore[arg-type]  # argparse choices
    finally:
        await conn.close()
    if not rows:
        return f"no {state or ''} notifications".replace("  ", " ")
    return "\n".join(
        f"{n.id}  {n.state:<9} {n.channel:<4} {n.kind:<22} tries={n.attempts} "
        f"updated={n.updated_at.isoformat()} error={n.last_error or '-'}"
        for n in rows
    )


async def backup(database_url: str, output: Path) -> str:
    from spean.backup import backup as take
    from spean.backup import manifest_path

    manifest = await take(database_url, output)
    rows = sum(manifest.tables.values())
    return (
        f"backup of {manifest.database} written to {output} ({manifest.dump_bytes} bytes, {manifest.dump_tool}); "
        f"manifest {manifest_path(output)}: {len(manifest.tables)} tables, {rows} rows, schema version "
        f"{manifest.schema_version}, audit head {manifest.audit_head_seq} {manifest.audit_head_hash}"
    )


async def restore(dump: Path, target_url: str) -> tuple[bool, str]:
    """Restore into an empty database, then prove it: row counts and schema version as the
    manifest says, and the audit chain recomputed to the very head the backup recorded."""
    from spean.backup import restore as put

    restored = await put(dump, target_url)
    problems = list(restored.mismatches)
    conn = await asyncpg.connect(target_url)
    try:
        verdict = await chain.verify(conn)
    finally:
        await conn.close()
    want = (restored.manifest.audit_head_seq, restored.manifest.audit_head_hash)
    if not verdict.ok:
        problems.append(f"audit chain BROKEN at event {verdict.problem_id}: {verdict.problem}")
    elif (verdict.head_seq, verdict.head_hash) != want:
        problems.append(f"audit head {verdict.head_seq} {verdict.head_hash}, the backup had {want[0]} {want[1]}")
    if problems:
        return False, "restore does NOT match its backup:\n  " + "\n  ".join(problems)
    tables = restored.manifest.tables
    return True, (
        f"restored {len(tables)} tables, {sum(tables.values())} rows, as the backup of "
        f"{restored.manifest.created_at} recorded; audit chain intact to head {verdict.head_seq} {verdict.head_hash}"
    )
