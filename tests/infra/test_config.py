"""Settings come from the environment and fail early, naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import ConfigError, load_settings


def test_defaults_use_embedded_servers() -> None:
    settings = load_settings({"DATABASE_URL": "", "REDIS_URL": ""})
    assert settings.uses_embedded_postgres
    assert settings.uses_embedded_redis


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
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ)
