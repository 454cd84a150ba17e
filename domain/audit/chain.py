"""The audit trail's hash chain: seal committed rows, verify the chain.

Guarantee: once a row is sealed, altering any of its columns, deleting it, inserting a row into
the sealed part, or removing the newest sealed rows makes `verify` fail and name the first row at
fault, unless the attacker also recomputes every later hash and the chain head. To catch even
that, keep the head hash printed by verify-audit outside the database (a ticket, a log shipper):
a later verify whose chain no longer passes through that (seq, hash) reveals a rewrite.
Rows not yet sealed (committed since the last sealing, by default at most a minute) are not
covered; they are reported as a count.

Writers never wait on the sealer: they only INSERT; the sealer takes its own advisory lock (one
sealer at a time) and the head row, and updates rows no writer touches again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from infra.db import Connection

GENESIS = bytes(32)
_SEAL_LOCK = 0x5E_A4_0A0D  # advisory lock id: "spean audit sealer"
_FIELDS = (
    "id", "at", "actor_user_id", "actor_role", "facility_id", "patient_id", "action", "resource_type",
    "resource_id", "purpose", "channel", "outcome", "request_id",
)  # fmt: skip
_BATCH = 5_000


def canonical(row: asyncpg.Record | dict[str, Any], seal_seq: int, prev_id: int | None) -> bytes:
    """A fixed, unambiguous encoding: a JSON array of the columns in a fixed order, as strings."""
    values: list[Any] = []
    for field in _FIELDS:
        value = row[field]
        values.append(value.isoformat() if field == "at" else None if value is None else str(value))
    return msgspec.json.encode([*values, seal_seq, prev_id])


def link(prev_hash: bytes, row: asyncpg.Record | dict[str, Any], seal_seq: int, prev_id: int | None) -> bytes:
    return hashlib.sha256(prev_hash + canonical(row, seal_seq, prev_id)).digest()


async def seal(conn: Connection, *, batch: int = _BATCH) -> int:
    """Chain every committed unsealed row (in id order), in batches; return how many were sealed.

    Returns 0 at once if another sealer is running."""
    total = 0
    while True:
        async with conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _SEAL_LOCK):
                return total
            head = await conn.fetchrow("SELECT last_seq, last_id, last_hash FROM audit_chain_head FOR UPDATE")
            assert head is not None, "migration 0006 creates the chain head"
            rows = await conn.fetch(
                f"SELECT {', '.join(_FIELDS)} FROM audit_events WHERE seal_seq IS NULL ORDER BY id LIMIT $1", batch
            )
            if not rows:
                return total
            seq, prev_id, prev_hash = head["last_seq"], head["last_id"], bytes(head["last_hash"])
            ids, seqs, prevs, hashes = [], [], [], []
            for row in rows:
                seq += 1
                prev_hash = link(prev_hash, row, seq, prev_id)
                ids.append(row["id"])
                seqs.append(seq)
                prevs.append(prev_id)
                hashes.append(prev_hash)
                prev_id = row["id"]
            # `seal_seq IS NULL` lets the join read the batch through the unsealed rows' index: without
            # it PostgreSQL scanned and hashed every event ever written, each round (300,000 events:
            # ~200 ms a round on the bench machine, for a batch of a few thousand).
            await conn.execute(
                """UPDATE audit_events e SET seal_seq = v.seq, prev_id = v.prev_id, hash = v.hash
                   FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[]) AS v(id, seq, prev_id, hash)
                   WHERE e.id = v.id AND e.seal_seq IS NULL""",
                ids,
                seqs,
                prevs,
                hashes,
            )
            await conn.execute(
                "UPDATE audit_chain_head SET last_seq = $1, last_id = $2, last_hash = $3, sealed_at = now()",
                seq,
                prev_id,
                prev_hash,
            )
            total += len(rows)
        if len(rows) < batch:
            return total


class Verdict(msgspec.Struct, kw_only=True):
    ok: bool
    sealed: int
    unsealed: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    problem_id: int | None = None  # the first row at fault (or the last intact one, for a cut tail)


def _check(rows: Sequence[asyncpg.Record], state: dict[str, Any]) -> tuple[str, int | None] | None:
    for row in rows:
        seq = state["seq"] + 1
        if row["seal_seq"] != seq:
            return f"sealed row(s) at chain position {seq} are missing (deleted)", row["id"]
        if row["prev_id"] != state["prev_id"]:
            return f"the row sealed after {state['prev_id']} is missing or was moved", row["id"]
        if row["hash"] is None or link(state["hash"], row, seq, state["prev_id"]) != bytes(row["hash"]):
            return f"audit event {row['id']} was altered after sealing", row["id"]
        state.update(seq=seq, prev_id=row["id"], hash=bytes(row["hash"]))
    return None


async def verify(conn: Connection, *, batch: int = _BATCH) -> Verdict:
    """Recompute the chain from the first sealed row to the head; report the first fault."""
    head = await conn.fetchrow("SELECT last_seq, last_id, last_hash FROM audit_chain_head")
    assert head is not None
    unsealed = await conn.fetchval("SELECT count(*) FROM audit_events WHERE seal_seq IS NULL")
    state: dict[str, Any] = {"seq": 0, "prev_id": None, "hash": GENESIS}
    problem: tuple[str, int | None] | None = None
    while problem is None:
        rows = await conn.fetch(
            f"""SELECT {", ".join(_FIELDS)}, seal_seq, prev_id, hash FROM audit_events
                WHERE seal_seq > $1 ORDER BY seal_seq LIMIT $2""",
            state["seq"],
            batch,
        )
        problem = _check(rows, state)
        if len(rows) < batch:
            break
    if problem is None and (state["seq"], state["hash"]) != (head["last_seq"], bytes(head["last_hash"])):
        problem = (f"the chain ends at position {state['seq']} but its head says {head['last_seq']}", state["prev_id"])
    return Verdict(
        ok=problem is None,
        sealed=state["seq"],
        unsealed=unsealed,
        head_seq=head["last_seq"],
        head_hash=bytes(head["last_hash"]).hex(),
        problem=problem[0] if problem else None,
        problem_id=problem[1] if problem else None,
    )
