"""`spean demo` on a database of its own: idempotent, patient phones get logins (so the CLI mints
their tokens), and a demo phone that another account already holds is reported, never taken over."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import jwt
import pytest

BIN = Path(sys.executable).parent


async def _sql(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


@pytest.fixture
def demo_env(servers: tuple[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    admin_dsn, redis_url = servers
    name = f"spean_demo_{secrets.token_hex(4)}"
    asyncio.run(_sql(admin_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield {
            **os.environ,
            "DATABASE_URL": urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}")),
            "REDIS_URL": redis_url,
            "SPEAN_DATA_DIR": str(tmp_path),
            "SPEAN_LOG_LEVEL": "warning",
        }
    finally:
        asyncio.run(_sql(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def spean(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN / "spean", *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_demo_is_idempotent_and_leaves_other_accounts_alone(demo_env: dict[str, str]) -> None:
    url = demo_env["DATABASE_URL"]
    assert spean(demo_env, "migrate").returncode == 0
    # Someone already holds Dr. Chan's demo phone.
    holder = uuid.uuid4()
    asyncio.run(_sql(url, "INSERT INTO users (id, phone, display_name) VALUES ($1, '+85512000201', 'Mr Lee')", holder))
    first = spean(demo_env, "demo")
    assert first.returncode == 0, first.stderr
    assert "skipped +85512000201" in first.stdout
    again = spean(demo_env, "demo")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    rows = asyncio.run(
        _sql(
            url,
            """SELECT u.display_name, (SELECT count(*) FROM memberships m WHERE m.user_id = u.id) AS roles,
                      (SELECT count(*) FROM practitioners p WHERE p.user_id = u.id) AS profiles
               FROM users u WHERE u.id = $1""",
            holder,
        )
    )
    assert [tuple(r) for r in rows] == [("Mr Lee", 0, 0)]
    # Every demo patient phone mints a token for its patients; the shared family phone for both.
    token = spean(demo_env, "admin", "issue-token", "--phone", "+85597000004")
    assert token.returncode == 0, token.stderr
    user_id = jwt.decode(token.stdout.strip(), options={"verify_signature": False})["sub"]
    linked = asyncio.run(_sql(url, "SELECT count(*) AS n FROM patient_accounts WHERE user_id = $1", uuid.UUID(user_id)))
    assert linked[0]["n"] == 2
    # The on-call doctor has free slots around the clock, every day.
    hours = asyncio.run(
        _sql(
            url,
            """SELECT weekday, start_local, end_local, slot_minutes FROM availability_rules r
               JOIN practitioners p ON p.id = r.practitioner_id JOIN users u ON u.id = p.user_id
               WHERE u.phone = '+85512000204' ORDER BY weekday""",
        )
    )
    assert [r["weekday"] for r in hours] == [1, 2, 3, 4, 5, 6, 7]
    assert all(str(r["start_local"]) == "00:00:00" and str(r["end_local"]) == "23:45:00" for r in hours)
