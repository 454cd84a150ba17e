"""A world for the export tests: two facilities with their health workers, patients and record
entries, a backend client with every read scope, and an export runner the tests step by hand
(run_once), so each status a poller can see is seen."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.fhir.bulk.runner import ExportRunner
from infra.config import Settings
from infra.storage import DiskBlobStore
from tests.bulk.smart import BackendClient, access_token, register
from tests.factory import Factory, Staff


@dataclass
class Site:
    facility: uuid.UUID
    chw: Staff
    patients: list[str]
    entries: dict[str, list[str]]  # FHIR type -> ids


@dataclass
class World:
    a: Site
    b: Site
    backend: BackendClient
    token: str  # system/*.read


async def _site(factory: Factory) -> Site:
    facility = await factory.facility(kind="health_post")
    chw = await factory.staff(facility, role="chw")
    patients = [str(await factory.patient(facility, token=chw.token)) for _ in range(2)]
    entries: dict[str, list[str]] = {"Encounter": [], "Observation": [], "Condition": []}
    for patient in patients:
        path = f"/v1/patients/{patient}/record"
        visit = {"kind": "encounter", "started_at": "2026-03-10T12:00:00Z", "ended_at": "2026-03-10T13:00:00Z",
                 "reason": "check-up"}  # fmt: skip
        encounter = await factory.post(path, visit, chw.token)
        entries["Encounter"].append(encounter["id"])
        weight = {"kind": "observation", "code": "29463-7", "value": 61, "unit": "kg",
                  "effective_at": "2026-03-10T12:30:00Z", "encounter_id": encounter["id"]}  # fmt: skip
        entries["Observation"].append((await factory.post(path, weight, chw.token))["id"])
        entries["Condition"].append((await factory.post(path, {"kind": "condition", "code": "I10"}, chw.token))["id"])
    return Site(facility, chw, patients, entries)


@pytest.fixture(scope="module")
async def world(
    factory: Factory, client: AsyncTestClient[Litestar], settings: Settings, database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> World:  # fmt: skip
    a, b = await _site(factory), await _site(factory)
    tmp: Path = tmp_path_factory.mktemp("clients")
    backend = await register(database_url, settings, tmp, ["system/*.read"])
    return World(a, b, backend, await access_token(client, settings, backend))


@pytest.fixture(scope="module")
def runner(db: asyncpg.Pool, settings: Settings) -> ExportRunner:
    return ExportRunner(db, DiskBlobStore(settings.data_dir / "attachments"), settings)
