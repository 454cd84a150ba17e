"""The `spean` command as an operator runs it: a real process against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from infra.embedded import free_port
from tests.factory import new_phone


@pytest.fixture(scope="module")
def cli_env(database_url: str, servers: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data_dir = tmp_path_factory.mktemp("cli")
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": servers[1],
        "SPEAN_DATA_DIR": str(data_dir),
        "SPEAN_LOG_JSON": "true",
        "SPEAN_LOG_LEVEL": "warning",
    }


def spean(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "spean.cli", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_migrate_is_idempotent(cli_env: dict[str, str]) -> None:
    assert "applied 0 migration(s)" in spean(cli_env, "migrate").stdout


def test_admin_creates_users_and_issues_tokens_the_server_accepts(cli_env: dict[str, str], tmp_path: Path) -> None:
    admin_phone = new_phone()
    assert (
        "is system_admin"
        in spean(cli_env, "admin", "create-user", "--phone", admin_phone, "--role", "system_admin").stdout
    )
    token = spean(cli_env, "admin", "issue-token", "--phone", admin_phone).stdout.strip()
    missing = spean(cli_env, "admin", "create-user", "--phone", new_phone(), "--role", "chw", check=False)
    assert missing.returncode == 1
    assert "facility_required" in missing.stderr
    unknown = spean(cli_env, "admin", "issue-token", "--phone", new_phone(), check=False)
    assert "user_not_found" in unknown.stderr

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "spean.cli", "serve", "--port", str(port), "--workers", "2"],
            env=cli_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/ready")
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            assert server.poll() is None, log.read_text()
            time.sleep(0.2)
        assert body["checks"] == {"postgres": "ok", "redis": "ok"}
        status, me = _get(f"http://127.0.0.1:{port}/v1/me", token)
        assert status == 200
        assert me["phone"] == admin_phone
        assert me["is_system_admin"] is True
        status, problem = _get(f"http://127.0.0.1:{port}/v1/me", "forged")
        assert (status, problem["code"]) == (401, "invalid_token")
    finally:
        server.terminate()
        server.wait(15)
    assert server.returncode == 0


def test_bad_configuration_is_reported(cli_env: dict[str, str]) -> None:
    result = spean({**cli_env, "SPEAN_DB_POOL_MAX": "lots"}, "migrate", check=False)
    assert result.returncode == 2
    assert "SPEAN_DB_POOL_MAX" in result.stderr


def test_admin_gives_roles_and_patient_logins(cli_env: dict[str, str], database_url: str) -> None:
    import asyncio

    import asyncpg

    async def new_facility() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            facility_id = await conn.fetchval(
                "INSERT INTO facilities (id, name, kind, timezone, country) "
                "VALUES (gen_random_uuid(), 'CLI post', 'health_post', 'Asia/Phnom_Penh', 'KH') RETURNING id::text"
            )
            return str(facility_id)
        finally:
            await conn.close()

    facility = asyncio.run(new_facility())
    specialist = spean(
        cli_env,
        "admin",
        "create-user",
        "--phone",
        new_phone(),
        "--role",
        "specialist",
        "--facility",
        facility,
        "--name",
        "Dr Sok",
    ).stdout
    assert f"is specialist at {facility}" in specialist
    patient = spean(
        cli_env,
        "admin",
        "create-user",
        "--phone",
        new_phone(),
        "--role",
        "patient",
        "--facility",
        facility,
        "--name",
        "Chantha",
    ).stdout
    assert "acts for patient" in patient
    bad = spean(
        cli_env, "admin", "create-user", "--phone", new_phone(), "--role", "chw", "--facility", "nope", check=False
    )
    assert bad.returncode == 1
    assert "invalid_facility" in bad.stderr


def test_create_user_never_changes_an_existing_account_unless_told(cli_env: dict[str, str], database_url: str) -> None:
    import asyncio

    import asyncpg

    async def sql(query: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    facility = str(
        asyncio.run(
            sql(
                "INSERT INTO facilities (id, name, kind, timezone, country) "
                "VALUES (gen_random_uuid(), 'CLI centre', 'reference_centre', 'Asia/Phnom_Penh', 'KH') RETURNING id"
            )
        )[0]["id"]
    )
    phone = new_phone()
    first = spean(cli_env, "admin", "create-user", "--phone", phone, "--role", "patient", "--facility", facility,
                  "--name", "Sok Chantha")  # fmt: skip
    assert "acts for patient" in first.stdout
    before = asyncio.run(sql("SELECT display_name, is_system_admin FROM users WHERE phone = $1", phone))
    for role in ("specialist", "system_admin"):
        refused = spean(cli_env, "admin", "create-user", "--phone", phone, "--role", role, "--facility", facility,
                        "--name", "Dr Someone", check=False)  # fmt: skip
        assert refused.returncode == 1
        assert "phone_in_use" in refused.stderr
    assert asyncio.run(sql("SELECT display_name, is_system_admin FROM users WHERE phone = $1", phone)) == before
    roles = "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.phone = $1"
    assert not asyncio.run(sql(roles, phone))
    linked = spean(cli_env, "admin", "create-user", "--phone", phone, "--role", "specialist", "--facility", facility,
                   "--name", "Dr Someone", "--link-existing")  # fmt: skip
    assert "existing account" in linked.stdout
    after = asyncio.run(
        sql(
            """SELECT u.display_name, p.name FROM users u JOIN practitioners p ON p.user_id = u.id
               WHERE u.phone = $1""",
            phone,
        )
    )
    assert [tuple(r) for r in after] == [("Sok Chantha", "Dr Someone")]
    assert asyncio.run(sql("SELECT 1 FROM audit_events WHERE action = 'link_account' AND actor_role = 'operator'"))
    # A patient registered by a health worker: the CLI makes their login, with no duplicate record.
    registered = new_phone()
    patient = asyncio.run(
        sql(
            """INSERT INTO patients (id, names, search_text, phone, home_facility_id)
               VALUES (gen_random_uuid(), '[{"text": "Heng"}]', 'heng', $1, $2) RETURNING id""",
            registered,
            uuid.UUID(facility),
        )
    )[0]["id"]
    token = spean(cli_env, "admin", "issue-token", "--phone", registered).stdout.strip()
    assert token.count(".") == 2
    made = spean(cli_env, "admin", "create-user", "--phone", registered, "--role", "patient", "--facility", facility)
    assert str(patient) in made.stdout
    assert asyncio.run(sql("SELECT count(*) AS n FROM patients WHERE phone = $1", registered))[0]["n"] == 1
