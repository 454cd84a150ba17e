"""Bulk Data $export end to end over HTTP: kick-off at each level, polling, the manifest, the
NDJSON files (each line the resource a FHIR read returns), _type and _since, Group = facility,
cancel, the concurrency limit, who may export what, and the audit trail."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.fhir.bulk.runner import ExportRunner
from api.fhir.errors import code_of
from infra.config import Settings
from tests.bulk.conftest import World
from tests.factory import Factory, auth

Client = AsyncTestClient[Litestar]
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


async def kick(client: Client, path: str, token: str, **params: str) -> str:
    response = await client.get(path, params=params, headers=auth(token) | ASYNC)
    assert response.status_code == 202, response.text
    return str(response.headers["content-location"])


async def finish(client: Client, runner: ExportRunner, status_url: str, token: str) -> dict[str, Any]:
    response = await client.get(status_url, headers=auth(token))
    assert response.status_code == 202, response.text
    assert response.headers["x-progress"]
    assert int(response.headers["retry-after"]) > 0
    for _ in range(20):
        await runner.run_once()
        response = await client.get(status_url, headers=auth(token))
        if response.status_code != 202:
            break
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    manifest: dict[str, Any] = response.json()
    return manifest


async def download(client: Client, manifest: dict[str, Any], token: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        assert (await client.get(item["url"])).status_code == 401  # requiresAccessToken
        response = await client.get(item["url"], headers=auth(token))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = response.text.splitlines()
        assert len(lines) == item["count"]
        assert response.text.endswith("\n")
        resources = [json.loads(line) for line in lines]
        assert all(r["resourceType"] == item["type"] for r in resources)
        found.setdefault(item["type"], []).extend(resources)
    return found


def ids(found: dict[str, list[dict[str, Any]]], resource_type: str) -> set[str]:
    return {r["id"] for r in found.get(resource_type, [])}


async def test_kick_off_needs_respond_async_and_ndjson(client: Client, world: World) -> None:
    response = await client.get("/fhir/$export", headers=auth(world.token))
    assert response.status_code == 400
    assert code_of(response.json()) == "respond_async_required"
    response = await client.get("/fhir/$export", params={"_outputFormat": "text/csv"},
                                headers=auth(world.token) | ASYNC)  # fmt: skip
    assert response.status_code == 400
    assert code_of(response.json()) == "unsupported_output_format"
    response = await client.get("/fhir/$export", params={"_type": "Appointment"}, headers=auth(world.token) | ASYNC)
    assert response.status_code == 400
    assert code_of(response.json()) == "unsupported_type"
    response = await client.get("/fhir/$export", params={"_since": "yesterday"}, headers=auth(world.token) | ASYNC)
    assert response.status_code == 422
    assert code_of(response.json()) == "invalid_date"
    strict = ASYNC | {"Prefer": "respond-async, handling=strict"}
    response = await client.get("/fhir/$export", params={"_typeFilter": "x"}, headers=auth(world.token) | strict)
    assert response.status_code == 400
    assert code_of(response.json()) == "unsupported_parameter"
    response = await client.get(f"/fhir/Group/{uuid.uuid4()}/$export", headers=auth(world.token) | ASYNC)
    assert response.status_code == 404


async def test_system_export_equals_what_reads_return(
    client: Client, world: World, runner: ExportRunner, settings: Settings
) -> None:
    status_url = await kick(client, "/fhir/$export", world.token, _outputFormat="application/fhir+ndjson")
    assert status_url.startswith(settings.public_base_url + "/fhir/bulk/status/")
    manifest = await finish(client, runner, status_url, world.token)
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    assert manifest["request"] == f"{settings.public_base_url}/fhir/$export?_outputFormat=application%2Ffhir%2Bndjson"
    assert datetime.fromisoformat(manifest["transactionTime"].replace("Z", "+00:00")) <= datetime.now(UTC)
    found = await download(client, manifest, world.token)
    assert {"Patient", "Encounter", "Observation", "Condition", "Organization"} <= set(found)
    for site in (world.a, world.b):
        assert set(site.patients) <= ids(found, "Patient")
        assert str(site.facility) in ids(found, "Organization")
        exported = {(r["resourceType"], r["id"]): r for rs in found.values() for r in rs}
        for resource_type, wanted in [("Patient", site.patients), *site.entries.items()]:
            for resource_id in wanted:
                read = await client.get(f"/fhir/{resource_type}/{resource_id}", headers=site.chw.headers)
                assert read.status_code == 200
                assert exported[(resource_type, resource_id)] == read.json()


async def test_type_and_since_filter(client: Client, world: World, runner: ExportRunner, factory: Factory) -> None:
    manifest = await finish(client, runner, await kick(client, "/fhir/$export", world.token, _type="Patient"),
                            world.token)  # fmt: skip
    assert {o["type"] for o in manifest["output"]} == {"Patient"}
    since = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    later = await factory.post(f"/v1/patients/{world.a.patients[0]}/record",
                               {"kind": "condition", "code": "E11.9"}, world.a.chw.token)  # fmt: skip
    status_url = await kick(client, "/fhir/Patient/$export", world.token, _type="Condition,Patient", _since=since)
    found = await download(client, await finish(client, runner, status_url, world.token), world.token)
    assert ids(found, "Condition") == {later["id"]}
    assert "Patient" not in found  # no patient changed since


async def test_group_export_holds_only_that_facilitys_patients(
    client: Client, world: World, runner: ExportRunner
) -> None:
    group = await client.get(f"/fhir/Group/{world.a.facility}", headers=auth(world.token))
    assert group.status_code == 200
    assert group.json()["quantity"] == 2
    assert group.json()["type"] == "person"
    assert group.json()["actual"] is True
    listed = await client.get("/fhir/Group", headers=auth(world.token))
    assert str(world.a.facility) in {e["resource"]["id"] for e in listed.json()["entry"]}
    status_url = await kick(client, f"/fhir/Group/{world.a.facility}/$export", world.token)
    found = await download(client, await finish(client, runner, status_url, world.token), world.token)
    assert ids(found, "Patient") == set(world.a.patients)
    assert ids(found, "Observation") == set(world.a.entries["Observation"])
    assert ids(found, "Encounter") == set(world.a.entries["Encounter"])
    assert "Organization" not in found  # not in a patient compartment
    assert all(r["subject"]["reference"].removeprefix("Patient/") in world.a.patients for r in found["Condition"])


async def test_cancel_and_the_concurrency_limit(
    client: Client, world: World, runner: ExportRunner, settings: Settings
) -> None:
    first = await kick(client, "/fhir/Patient/$export", world.token)
    second = await kick(client, "/fhir/Patient/$export", world.token)
    third = await client.get("/fhir/Patient/$export", headers=auth(world.token) | ASYNC)
    assert settings.bulk_max_active == 2
    assert third.status_code == 429
    assert int(third.headers["retry-after"]) > 0
    assert code_of(third.json()) == "too_many_exports"
    assert (await client.delete(first, headers=auth(world.token))).status_code == 202
    assert (await client.get(first, headers=auth(world.token))).status_code == 404
    assert (await client.delete(first, headers=auth(world.token))).status_code == 404
    await kick(client, "/fhir/Patient/$export", world.token)  # room again
    for url in (second,):
        assert (await client.delete(url, headers=auth(world.token))).status_code == 202
    # Finished exports' files can be dropped early the same way.
    done = await finish(client, runner, await kick(client, "/fhir/$export", world.token, _type="Organization"),
                        world.token)  # fmt: skip
    status_url = done["output"][0]["url"].replace("/files/", "/status/").rsplit("/", 1)[0]
    assert (await client.delete(status_url, headers=auth(world.token))).status_code == 202
    assert (await client.get(done["output"][0]["url"], headers=auth(world.token))).status_code == 404
    while await runner.run_once():  # leave no queued job behind
        pass


async def test_who_may_export_what(
    client: Client, world: World, runner: ExportRunner, factory: Factory, settings: Settings, database_url: str,
    tmp_path: Any,
) -> None:  # fmt: skip
    from tests.bulk.smart import access_token, register

    narrow = await register(database_url, settings, tmp_path, ["system/Patient.read"])
    token = await access_token(client, settings, narrow, "system/Patient.read")
    refused = await client.get("/fhir/$export", params={"_type": "Observation"}, headers=auth(token) | ASYNC)
    assert refused.status_code == 403
    assert code_of(refused.json()) == "scope_insufficient"
    found = await download(client, await finish(client, runner, await kick(client, "/fhir/$export", token), token),
                           token)  # fmt: skip
    assert set(found) == {"Patient"}
    # Another client's export does not exist for this one.
    mine = await kick(client, "/fhir/Patient/$export", world.token)
    assert (await client.get(mine, headers=auth(token))).status_code == 404
    assert (await client.delete(mine, headers=auth(world.token))).status_code == 202
    # A client's token is good for bulk export only: not the app API, not single reads, no writes.
    for path in (f"/v1/patients/{world.a.patients[0]}", f"/fhir/Patient/{world.a.patients[0]}", "/v1/me"):
        response = await client.get(path, headers=auth(world.token))
        assert response.status_code == 403, path
    # App users: a health worker may not; a system admin may, demographics only.
    chw = await client.get("/fhir/$export", headers=world.a.chw.headers | ASYNC)
    assert chw.status_code == 403
    assert code_of(chw.json()) == "role_required"
    assert (await client.get("/fhir/Group", headers=world.a.chw.headers)).status_code == 403
    admin = await factory.admin_token()
    clinical = await client.get("/fhir/$export", params={"_type": "Observation"}, headers=auth(admin) | ASYNC)
    assert clinical.status_code == 403
    found = await download(client, await finish(client, runner, await kick(client, "/fhir/$export", admin), admin),
                           admin)  # fmt: skip
    assert set(found) == {"Patient", "Organization"}


async def test_export_is_audited(client: Client, world: World, runner: ExportRunner, db: asyncpg.Pool) -> None:
    status_url = await kick(client, f"/fhir/Group/{world.b.facility}/$export", world.token, _type="Patient,Observation")
    await finish(client, runner, status_url, world.token)
    job_id = status_url.rsplit("/", 1)[1]
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT actor_user_id, actor_role, patient_id, purpose, channel FROM audit_events "
            "WHERE action = 'export' AND resource_id = $1",
            job_id,
        )
    summary = [r for r in rows if r["patient_id"] is None]
    assert len(summary) == 1
    assert str(summary[0]["actor_user_id"]) == world.backend.id
    assert summary[0]["actor_role"] == "system_client"
    assert summary[0]["purpose"] == "bulk group export: Patient=2,Observation=2"
    assert {str(r["patient_id"]) for r in rows if r["patient_id"]} == set(world.b.patients)


async def test_a_dead_workers_job_is_taken_over_and_files_expire(
    client: Client, world: World, runner: ExportRunner, db: asyncpg.Pool
) -> None:
    from domain.export import jobs

    status_url = await kick(client, "/fhir/Patient/$export", world.token, _type="Patient")
    async with db.acquire() as conn:
        crashed = await jobs.claim(conn, lease_s=60)  # a worker claims it, then dies
        assert crashed is not None
        assert str(crashed.id) == status_url.rsplit("/", 1)[1]
        assert not await runner.run_once()  # leased: nobody else takes it yet
        await conn.execute("UPDATE bulk_exports SET lease_until = now() - interval '1 second' WHERE id = $1",
                           crashed.id)  # fmt: skip
    manifest = await finish_after_takeover(client, runner, status_url, world.token)
    file_url = manifest["output"][0]["url"]
    assert (await client.get(file_url, headers=auth(world.token))).status_code == 200
    async with db.acquire() as conn:
        await conn.execute("UPDATE bulk_exports SET expires_at = now() - interval '1 second' WHERE id = $1",
                           crashed.id)  # fmt: skip
    assert await runner.sweep() >= 1
    assert (await client.get(status_url, headers=auth(world.token))).status_code == 404
    assert (await client.get(file_url, headers=auth(world.token))).status_code == 404


async def finish_after_takeover(client: Client, runner: ExportRunner, status_url: str, token: str) -> dict[str, Any]:
    assert await runner.run_once()
    response = await client.get(status_url, headers=auth(token))
    assert response.status_code == 200, response.text
    manifest: dict[str, Any] = response.json()
    return manifest
