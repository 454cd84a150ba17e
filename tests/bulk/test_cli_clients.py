"""`spean admin register-client | list-clients | revoke-client` as an operator runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.bulk.smart import Key
from tests.test_cli import spean


@pytest.fixture(scope="module")
def env(database_url: str, servers: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": servers[1],
            "SPEAN_DATA_DIR": str(tmp_path_factory.mktemp("cli")), "SPEAN_LOG_LEVEL": "warning"}  # fmt: skip


def test_register_list_and_revoke_a_client(env: dict[str, str], tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(Key.ec().jwks()))
    shown = json.loads(
        spean(env, "admin", "register-client", "--name", "HMIS", "--jwks-file", str(jwks),
              "--scope", "system/Patient.read", "--scope", "system/Observation.rs").stdout
    )  # fmt: skip
    assert shown["scopes"] == ["system/Patient.read", "system/Observation.rs"]
    assert shown["keys"] == "1 registered key(s)"
    assert shown["revoked_at"] is None
    listed = json.loads(spean(env, "admin", "list-clients").stdout)
    assert shown["client_id"] in {c["client_id"] for c in listed}
    revoked = json.loads(spean(env, "admin", "revoke-client", shown["client_id"]).stdout)
    assert revoked["revoked_at"] is not None
    by_url = json.loads(spean(env, "admin", "register-client", "--name", "DHIS", "--jwks-url",
                              "https://dhis.example/jwks.json", "--scope", "system/*.read").stdout)  # fmt: skip
    assert by_url["keys"] == "https://dhis.example/jwks.json"


def test_bad_registrations_are_refused(env: dict[str, str], tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(Key.rsa().jwks()))
    write = spean(env, "admin", "register-client", "--name", "x", "--jwks-file", str(jwks), "--scope",
                  "system/Patient.write", check=False)  # fmt: skip
    assert write.returncode == 1
    assert "invalid_scope" in write.stderr
    nothing = spean(env, "admin", "register-client", "--name", "x", "--scope", "system/*.read", check=False)
    assert nothing.returncode == 2
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("not a key")
    bad = spean(env, "admin", "register-client", "--name", "x", "--jwks-file", str(garbage), "--scope",
                "system/*.read", check=False)  # fmt: skip
    assert bad.returncode == 1
    assert "invalid_jwks" in bad.stderr
