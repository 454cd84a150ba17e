"""Bulk export's status and file routes under hostile input: file names that are not a file of
the export (bad UTF-8, control characters, digits int() refuses, very long), another caller's
export, a repeated cancel. Each is a 4xx with a code, never a 500, and never says whether another
caller's export exists."""

from __future__ import annotations

import uuid

from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.fhir.bulk.runner import ExportRunner
from tests.bulk.conftest import World
from tests.bulk.test_export import finish, kick
from tests.factory import Factory, auth
from tests.hostile.refusal import HOSTILE, harmless, refused

Client = AsyncTestClient[Litestar]


async def test_file_names_that_are_no_file_of_the_export_are_404(
    client: Client, world: World, runner: ExportRunner
) -> None:
    status_url = await kick(client, "/fhir/Patient/$export", world.token)
    manifest = await finish(client, runner, status_url, world.token)
    job = status_url.rstrip("/").rsplit("/", 1)[1]
    files = f"/fhir/bulk/files/{job}"
    assert (await client.get(manifest["output"][0]["url"], headers=auth(world.token))).status_code == 200
    names = [f"{h}.ndjson" for h in HOSTILE] + [f"0.ndjson{h}" for h in HOSTILE]
    names += ["%C2%B2.ndjson", "%D9%A1.ndjson", "-1.ndjson", "1e3.ndjson", "0x0.ndjson", "0.NDJSON", "0", "99.ndjson"]
    for name in names:
        refused(await client.get(f"{files}/{name}", headers=auth(world.token)), 400, 403, 404)
    for query in HOSTILE:
        # An unknown query parameter is no harm here; one that is not UTF-8 is refused.
        harmless(await client.get(f"{status_url}?x={query}", headers=auth(world.token)))


async def test_another_callers_export_is_not_found_and_says_nothing_of_itself(
    client: Client, world: World, runner: ExportRunner, factory: Factory
) -> None:
    status_url = await kick(client, "/fhir/Patient/$export", world.token)
    await finish(client, runner, status_url, world.token)
    job = status_url.rstrip("/").rsplit("/", 1)[1]
    admin = await factory.admin_token()
    theirs = [
        await client.get(status_url, headers=auth(admin)),
        await client.get(f"/fhir/bulk/files/{job}/0.ndjson", headers=auth(admin)),
        await client.delete(status_url, headers=auth(admin)),
    ]
    nobodys = [
        await client.get(f"/fhir/bulk/status/{uuid.uuid4()}", headers=auth(admin)),
        await client.get(f"/fhir/bulk/files/{uuid.uuid4()}/0.ndjson", headers=auth(admin)),
        await client.delete(f"/fhir/bulk/status/{uuid.uuid4()}", headers=auth(admin)),
    ]
    for mine, unknown in zip(theirs, nobodys, strict=True):
        # The same answer as for an export that never was: existence is not told.
        assert (mine.status_code, refused(mine)) == (unknown.status_code, refused(unknown)) == (404, refused(unknown))
    for bad in ("not-a-uuid", "%ff%fe", "%00", "x" * 5000):
        refused(await client.get(f"/fhir/bulk/status/{bad}", headers=auth(admin)), 400, 404)
        refused(await client.get(f"/fhir/bulk/files/{bad}/0.ndjson", headers=auth(admin)), 400, 404)


async def test_a_repeated_cancel_answers_as_the_first_did_or_says_it_is_gone(
    client: Client, world: World, runner: ExportRunner
) -> None:
    status_url = await kick(client, "/fhir/Patient/$export", world.token)
    first = await client.delete(status_url, headers=auth(world.token))
    assert first.status_code == 202
    again = await client.delete(status_url, headers=auth(world.token))
    assert again.status_code in (202, 404), again.text
    if again.status_code == 404:
        refused(again)
    refused(await client.get(status_url, headers=auth(world.token)), 404)
