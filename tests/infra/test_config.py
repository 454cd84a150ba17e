"""Settings come from the environment and fail early, naming the variable."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.config import ConfigError, load_settings, resolve_secret_key


def test_defaults_use_embedded_servers() -> None:
    settings = load_settings({"DATABASE_URL": "", "REDIS_URL": ""})
    assert settings.uses_embedded_postgres
    assert settings.uses_embedded_redis


def test_behind_a_transaction_pooler_the_worker_listens_on_the_session_url() -> None:
    bounced = {"DATABASE_URL": "postgresql://bouncer", "SPEAN_DB_POOLER": "transaction"}
    settings = load_settings({**bounced, "DATABASE_MIGRATE_URL": "postgresql://primary"})
    assert settings.listen_url == "postgresql://primary"
    settings = load_settings({**bounced, "SPEAN_WORKER_LISTEN_URL": "postgresql://listen"})
    assert settings.listen_url == "postgresql://listen"
    assert not load_settings({**bounced, "SPEAN_WORKER_LISTEN": "false"}).worker_listen
    # Directly on PostgreSQL the worker listens where it works, migrations going elsewhere or not.
    assert load_settings({"DATABASE_MIGRATE_URL": "postgresql://primary"}).listen_url == ""


def test_values_are_converted() -> None:
    settings = load_settings({"SPEAN_DATA_DIR": "/var/lib/spean", "SPEAN_DB_POOL_MAX": "40", "SPEAN_LOG_JSON": "0"})
    assert settings.data_dir == Path("/var/lib/spean")
    assert settings.db_pool_max == 40
    assert settings.log_json is False


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SPEAN_DB_POOL_MAX": "many"}, "SPEAN_DB_POOL_MAX"),
        ({"SPEAN_DB_POOL_MAX": "0"}, "SPEAN_DB_POOL_MAX"),
        ({"SPEAN_LOG_LEVEL": "loud"}, "SPEAN_LOG_LEVEL"),
        ({"SPEAN_ENV": "production", "DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x"}, "SPEAN_SECRET_KEY"),
        ({"SPEAN_ENV": "production", "SPEAN_SECRET_KEY": "x" * 40}, "DATABASE_URL"),
        ({"SPEAN_DB_POOLER": "pgbouncer"}, "SPEAN_DB_POOLER"),
        ({"SPEAN_DB_REPLICA_MAX_LAG": "0"}, "SPEAN_DB_REPLICA_MAX_LAG"),
        ({"SPEAN_DB_REPLICA_MAX_LAG": "soon"}, "SPEAN_DB_REPLICA_MAX_LAG"),
        ({"DATABASE_REPLICA_URL": "postgresql://replica"}, "DATABASE_REPLICA_URL needs DATABASE_URL"),
        # LISTEN needs a session: a transaction pooler alone cannot carry it.
        ({"DATABASE_URL": "postgresql://bouncer", "SPEAN_DB_POOLER": "transaction"}, "SPEAN_WORKER_LISTEN_URL"),
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ)


_RESOLVE_AT = """
import sys, time
from pathlib import Path
from infra.config import load_settings, resolve_secret_key
settings = load_settings({}, data_dir=Path(sys.argv[1]))
start = float(sys.argv[2])
while time.time() < start:  # all processes leave this loop within the same millisecond
    pass
print(resolve_secret_key(settings))
"""


@pytest.mark.parametrize("round_", range(4))
def test_workers_starting_together_share_one_whole_signing_key(tmp_path: Path, round_: int) -> None:
    """Many processes resolve the development key at once: each gets the same complete key."""
    data_dir = tmp_path / "data"
    start = time.time() + 2.0  # time for every interpreter to start and import
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RESOLVE_AT, str(data_dir), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(12)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    keys = {out.strip() for out, _ in results}
    assert len(keys) == 1
    [key] = keys
    assert len(key) >= 64
    path = data_dir / "secret_key"
    assert path.read_text() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in data_dir.iterdir()] == ["secret_key"]  # no temp files left behind


def test_an_empty_key_file_is_refused_not_used(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        resolve_secret_key(load_settings({}, data_dir=tmp_path))
