"""Refresh tokens presented at once, across two server processes: one rotation wins, and a
copy is told apart from the phone's own retry only by the Idempotency-Key."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import asyncpg
import httpx

from domain.identity import refresh, users
from tests.factory import new_phone
from tests.races.conftest import Live

AT_ONCE = 8
ROUNDS = 5


async def _session(db: asyncpg.Pool) -> tuple[uuid.UUID, str]:
    async with db.acquire() as conn:
        user_id = await users.ensure_user(conn, new_phone())
        return user_id, await refresh.issue(conn, user_id, 600)


async def _rotate(http: httpx.AsyncClient, live: Live, i: int, token: str, key: str | None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return await http.post(f"{live.url(i)}/v1/auth/refresh", json={"refresh_token": token}, headers=headers)


async def test_one_token_rotated_at_once_has_one_winner_and_ends_the_session(
    live: Live, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """Without a key, or each with its own (copies of the token, not retries): one 200, the
    others a reuse (or, once a reuse has revoked the family, a revoked session), and the whole
    family is revoked, the winner's new token included."""
    for round_no in range(ROUNDS):
        user_id, token = await _session(db)
        keys = [None if round_no % 2 else f"copy-{uuid.uuid4()}" for _ in range(AT_ONCE)]
        answers = await asyncio.gather(*(_rotate(http, live, i, token, keys[i]) for i in range(AT_ONCE)))
        codes = Counter(a.status_code if a.status_code == 200 else a.json()["code"] for a in answers)
        assert codes[200] == 1, codes
        assert codes["refresh_token_reused"] >= 1, codes
        assert set(codes) <= {200, "refresh_token_reused", "refresh_token_revoked"}, codes
        rows = await db.fetch("SELECT used_at, revoked_at FROM refresh_tokens WHERE user_id = $1", user_id)
        assert len(rows) == 2  # the token and the one successor
        assert all(r["revoked_at"] is not None for r in rows)
        winner = next(a for a in answers if a.status_code == 200).json()
        after = await _rotate(http, live, 0, winner["refresh_token"], None)
        assert after.json()["code"] == "refresh_token_revoked"


async def test_one_request_sent_again_at_once_is_one_rotation_replayed(
    live: Live, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """The phone's own resends (same token, same key) meet the first one in flight: every answer
    is that rotation's, nothing is revoked, and the session lives on."""
    for _ in range(ROUNDS):
        user_id, token = await _session(db)
        key = f"resend-{uuid.uuid4()}"
        answers = await asyncio.gather(*(_rotate(http, live, i, token, key) for i in range(AT_ONCE)))
        assert {a.status_code for a in answers} == {200}, [a.text for a in answers if a.status_code != 200]
        assert len({a.json()["refresh_token"] for a in answers}) == 1
        rows = await db.fetch("SELECT revoked_at FROM refresh_tokens WHERE user_id = $1", user_id)
        assert len(rows) == 2
        assert all(r["revoked_at"] is None for r in rows)
        next_one = await _rotate(http, live, 1, answers[0].json()["refresh_token"], None)
        assert next_one.status_code == 200, next_one.text


async def test_a_logout_racing_a_rotation_ends_every_token_of_the_session(
    live: Live, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """Sign-out and a rotation of the same token at once, on two processes, either order: once
    both have answered, no token of that session can be rotated any more (a successor issued by
    the rotation is revoked with the rest, and a rotation that comes second issues none)."""
    for round_no in range(ROUNDS * 4):
        user_id, token = await _session(db)
        first, second = (0, 1) if round_no % 2 else (1, 0)
        logout, rotation = await asyncio.gather(
            http.post(f"{live.url(first)}/v1/auth/logout", json={"refresh_token": token}),
            _rotate(http, live, second, token, None),
        )
        assert logout.status_code == 204, logout.text
        assert rotation.status_code in (200, 401), rotation.text
        rows = await db.fetch("SELECT revoked_at FROM refresh_tokens WHERE user_id = $1", user_id)
        assert all(r["revoked_at"] is not None for r in rows), (rotation.status_code, len(rows))
        if rotation.status_code == 200:
            after = await _rotate(http, live, 0, rotation.json()["refresh_token"], None)
            assert after.json()["code"] == "refresh_token_revoked"
