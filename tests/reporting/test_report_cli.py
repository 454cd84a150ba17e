"""`spean report dhis2` as an operator runs it (a real process on the test database) against a
local server speaking DHIS2's dataValueSets API: auth headers, the payload, import summaries
(success, update on re-push, conflicts), a 401, an unreachable server, and a dry run that sends
nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from infra.embedded import free_port
from tests.dhis2_server import Dhis2Server, running
from tests.factory import Factory
from tests.reporting.month import Month, build

ORG_UNITS = {"centre": "OuCentre001", "post": "OuPost00001", "lima": "OuLima00001"}
Pair = tuple[str, str | None]  # dataElement, categoryOptionCombo
BREAKDOWNS: dict[str, dict[str, Pair]] = {
    "consultations_by_mode": {
        "video": ("TlhConsult1", "ModeVideo01"),
        "audio": ("TlhConsult1", "ModeAudio01"),
        "async": ("TlhConsult1", "ModeAsync01"),
    },
    "consultations_by_specialty": {
        "cardiology": ("TlhSpecial1", "SpecCardio1"),
        "neurology": ("TlhSpecial1", "SpecNeuro01"),
        "general": ("TlhSpecial1", "SpecGenera1"),
    },
}
SCALARS: dict[str, Pair] = {
    "no_shows": ("TlhNoShows1", None),
    "referrals_sent": ("TlhRefSent1", None),
    "referrals_answered": ("TlhRefAnsw1", None),
    "referrals_completed": ("TlhRefDone1", None),
    "median_wait_days": ("TlhWaitMed1", None),
    "median_referral_wait_days": ("TlhRefWait1", None),
}
ELEMENT_UIDS = {"TlhConsult1", "TlhSpecial1", "TlhNoShows1", "TlhRefSent1", "TlhRefAnsw1", "TlhRefDone1",
                "TlhWaitMed1", "TlhRefWait1"}  # fmt: skip


def _target(pair: Pair) -> dict[str, str]:
    element, combo = pair
    return {"dataElement": element, **({"categoryOptionCombo": combo} if combo else {})}


def _elements() -> dict[str, Any]:
    out: dict[str, Any] = {name: _target(pair) for name, pair in SCALARS.items()}
    out.update({name: {key: _target(pair) for key, pair in entry.items()} for name, entry in BREAKDOWNS.items()})
    return out


@pytest.fixture(scope="module")
async def month(factory: Factory, db: asyncpg.Pool) -> Month:
    # A month no other test writes into: every facility with figures in it is one of these three.
    return await build(factory, db, 2024, 3)


@pytest.fixture(scope="module")
def mapping_file(month: Month, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dhis2") / "mapping.json"
    org_units = {str(month.centre): ORG_UNITS["centre"], str(month.post): ORG_UNITS["post"],
                 str(month.lima): ORG_UNITS["lima"]}  # fmt: skip
    path.write_text(json.dumps({"dataSet": "TlhMonthly1", "orgUnits": org_units, "dataElements": _elements()}))
    return path


@pytest.fixture
def dhis2() -> Iterator[Dhis2Server]:
    with running(Dhis2Server(data_elements=ELEMENT_UIDS, org_units=set(ORG_UNITS.values()))) as server:
        yield server


def _env(database_url: str, mapping_file: Path, base_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DHIS2_")}
    return {
        **env,
        "DATABASE_URL": database_url,
        "SPEAN_LOG_LEVEL": "warning",
        "DHIS2_BASE_URL": base_url,
        "DHIS2_MAPPING": str(mapping_file),
        **extra,
    }


def report(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spean.cli", "report", "dhis2", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _values(body: dict[str, Any]) -> dict[tuple[str, str, str | None], str]:
    return {(v["orgUnit"], v["dataElement"], v.get("categoryOptionCombo")): v["value"] for v in body["dataValues"]}


def _check_figures(values: dict[tuple[str, str, str | None], str]) -> None:
    centre, post, lima = ORG_UNITS["centre"], ORG_UNITS["post"], ORG_UNITS["lima"]
    assert values[(centre, "TlhConsult1", "ModeVideo01")] == "2"
    assert values[(centre, "TlhConsult1", "ModeAudio01")] == "1"
    assert values[(centre, "TlhConsult1", "ModeAsync01")] == "0"
    assert values[(centre, "TlhSpecial1", "SpecNeuro01")] == "1"
    assert values[(centre, "TlhNoShows1", None)] == "1"
    assert values[(centre, "TlhWaitMed1", None)] == "4"
    assert values[(post, "TlhRefSent1", None)] == "6"
    assert values[(post, "TlhRefAnsw1", None)] == "5"
    assert values[(post, "TlhRefDone1", None)] == "3"
    assert values[(post, "TlhRefWait1", None)] == "13"
    assert (post, "TlhWaitMed1", None) not in values  # no consultation: no median
    assert values[(lima, "TlhConsult1", "ModeAudio01")] == "1"
    assert values[(lima, "TlhSpecial1", "SpecGenera1")] == "1"
    assert values[(lima, "TlhNoShows1", None)] == "1"


async def _pushes(db: asyncpg.Pool, period: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM dhis2_pushes WHERE period = $1 ORDER BY finished_at", period)


async def test_dry_run_prints_the_payload_and_sends_nothing(
    database_url: str, mapping_file: Path, month: Month, dhis2: Dhis2Server, db: asyncpg.Pool
) -> None:
    env = _env(database_url, mapping_file, dhis2.base_url, DHIS2_TOKEN=dhis2.token)
    done = report(env, "--period", "20240331", "--dry-run")  # one day: a period of its own in the ledger
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["period"] == "20240331"
    assert body["dataSet"] == "TlhMonthly1"
    assert _values(body)[(ORG_UNITS["lima"], "TlhConsult1", "ModeAudio01")] == "1"
    assert dhis2.requests == []
    assert await _pushes(db, "20240331") == []


async def test_push_then_re_push_updates_and_the_ledger_keeps_both(
    database_url: str, mapping_file: Path, month: Month, dhis2: Dhis2Server, db: asyncpg.Pool
) -> None:
    first = report(_env(database_url, mapping_file, dhis2.base_url, DHIS2_TOKEN=dhis2.token), "--period", month.period)
    assert first.returncode == 0, first.stderr
    (request,) = dhis2.requests
    assert request.authorization == f"ApiToken {dhis2.token}"
    assert request.query == {"importStrategy": "CREATE_AND_UPDATE", "dryRun": "false"}
    assert request.body["period"] == "202403"
    _check_figures(_values(request.body))
    sent = len(request.body["dataValues"])
    assert f"SUCCESS: imported {sent}, updated 0, ignored 0, deleted 0 ({sent} values for 3 facilities)" in first.stdout

    # Again, with a user and password: DHIS2 updates the values the first push created.
    basic = _env(database_url, mapping_file, dhis2.base_url, DHIS2_USERNAME="admin", DHIS2_PASSWORD="district")
    second = report(basic, "--period", month.period)
    assert second.returncode == 0, second.stderr
    assert dhis2.requests[1].authorization.startswith("Basic ")
    assert f"imported 0, updated {sent}" in second.stdout
    assert len(dhis2.values) == sent

    first_row, second_row = await _pushes(db, "202403")
    assert (first_row["status"], first_row["imported"], first_row["updated"]) == ("SUCCESS", sent, 0)
    assert (second_row["status"], second_row["imported"], second_row["updated"]) == ("SUCCESS", 0, sent)
    assert sorted(first_row["facility_ids"]) == sorted(month.facilities)
    assert first_row["values_sent"] == sent
    assert first_row["server_dry_run"] is False
    audited = await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'export' AND resource_type = 'Dhis2DataValueSet' "
        "AND resource_id = ANY($1::text[]) AND actor_role = 'operator'",
        [str(first_row["id"]), str(second_row["id"])],
    )
    assert audited == 2


async def test_dhis2_dry_run_checks_there_and_stores_nothing(
    database_url: str, mapping_file: Path, month: Month, dhis2: Dhis2Server, db: asyncpg.Pool
) -> None:
    env = _env(database_url, mapping_file, dhis2.base_url, DHIS2_TOKEN=dhis2.token)
    done = report(env, "--period", "2024W13", "--server-dry-run", "--facility", str(month.lima))
    assert done.returncode == 0, done.stderr
    assert "(dryRun: nothing stored): SUCCESS" in done.stdout
    assert dhis2.requests[0].query["dryRun"] == "true"
    assert {v["orgUnit"] for v in dhis2.requests[0].body["dataValues"]} == {ORG_UNITS["lima"]}
    assert dhis2.values == {}
    (row,) = await _pushes(db, "2024W13")
    assert row["server_dry_run"] is True


async def test_conflicts_are_reported_and_fail_the_command(
    database_url: str, mapping_file: Path, month: Month, db: asyncpg.Pool
) -> None:
    # This DHIS2 does not know Lima's org unit: its values are ignored, the others imported.
    server = Dhis2Server(data_elements=ELEMENT_UIDS, org_units={ORG_UNITS["centre"], ORG_UNITS["post"]})
    with running(server):
        env = _env(database_url, mapping_file, server.base_url, DHIS2_TOKEN=server.token)
        done = report(env, "--period", "20240301")
    assert done.returncode == 3
    assert "WARNING" in done.stderr
    assert f"conflict: {ORG_UNITS['lima']}: Organisation unit not found or not accessible [E7612]" in done.stderr
    (row,) = await _pushes(db, "20240301")
    assert row["status"] == "WARNING"
    assert row["http_status"] == 409
    assert row["ignored"] > 0
    assert row["conflicts"][0]["error_code"] == "E7612"


async def test_refused_credentials_and_an_unreachable_server(
    database_url: str, mapping_file: Path, month: Month, dhis2: Dhis2Server, db: asyncpg.Pool
) -> None:
    wrong = report(_env(database_url, mapping_file, dhis2.base_url, DHIS2_TOKEN="d2pat_wrong"), "--period", "20240302")
    assert wrong.returncode == 4
    assert "dhis2_unauthorized" in wrong.stderr
    assert dhis2.values == {}
    away = _env(database_url, mapping_file, f"http://127.0.0.1:{free_port()}", DHIS2_TOKEN=dhis2.token)
    gone = report(away, "--period", "20240302")
    assert gone.returncode == 5
    assert "dhis2_unreachable" in gone.stderr
    statuses = [row["status"] for row in await _pushes(db, "20240302")]
    assert statuses == ["unauthorized", "unreachable"]
    unset = report(_env(database_url, mapping_file, dhis2.base_url), "--period", "20240302")
    assert unset.returncode == 2
    assert "DHIS2_TOKEN" in unset.stderr


async def test_a_mapping_that_leaves_out_an_active_facility_stops_before_sending(
    database_url: str, month: Month, dhis2: Dhis2Server, tmp_path: Path
) -> None:
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"orgUnits": {str(month.centre): "OuCentre001"}, "dataElements": _elements()}))
    env = _env(database_url, partial, dhis2.base_url, DHIS2_TOKEN=dhis2.token)
    done = report(env, "--period", month.period)
    assert done.returncode == 1
    assert "dhis2_mapping_invalid" in done.stderr
    assert str(month.post) in done.stderr
    assert str(month.lima) in done.stderr
    assert dhis2.requests == []
    bad_period = report(env, "--period", "2024Q1")
    assert bad_period.returncode == 1
    assert "invalid_period" in bad_period.stderr
    missing = report({**env, "DHIS2_MAPPING": str(tmp_path / "nope.json")}, "--period", month.period)
    assert missing.returncode == 1
    assert "dhis2_mapping_missing" in missing.stderr
