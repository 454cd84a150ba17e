"""Offline sync through HTTP: pull pages by cursor, push applies each change at most once,
reports conflicts with the current version, and one bad item does not undo the others."""

from __future__ import annotations

import asyncio
import random
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, Scene

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module", autouse=True)
async def busy_neighbour(servers: tuple[str, str]) -> AsyncIterator[None]:
    """The server is shared: another database holds a transaction (with an xid) open throughout."""
    admin = await asyncpg.connect(servers[0])
    neighbour = f"sync_neighbour_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{neighbour}"')
    other = await asyncpg.connect(urlunsplit(urlsplit(servers[0])._replace(path=f"/{neighbour}")))
    try:
        await other.execute("BEGIN; SELECT pg_current_xact_id();")
        yield
    finally:
        await other.close()
        await admin.execute(f'DROP DATABASE "{neighbour}" WITH (FORCE)')
        await admin.close()


def temperature(value: float) -> dict[str, Any]:
    return {"kind": "observation", "code": "8310-5", "value": value, "unit": "Cel"}


async def push(client: Client, scene: Scene, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = await client.post("/v1/sync", json={"changes": changes}, headers=scene.chw.headers)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


class TestPush:
    async def test_each_change_applies_once_and_answers_per_item(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        scene = await factory.scene()
        batch = [
            {"client_id": "phone1-1", "patient_id": str(scene.patient), "entry": temperature(38.5)},
            {"client_id": "phone1-2", "patient_id": str(scene.patient), "entry": temperature(385)},
            {"client_id": "phone1-3", "patient_id": str(scene.patient), "entry": {"kind": "note", "text": "cough"}},
        ]
        first = await push(client, scene, batch)
        assert [r["result"] for r in first] == ["applied", "rejected", "applied"]
        assert first[1]["code"] == "implausible_value"
        again = await push(client, scene, batch)
        assert [r["result"] for r in again] == ["duplicate", "rejected", "duplicate"]
        assert again[0]["entry_id"] == first[0]["entry_id"]
        count = await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", scene.patient)
        assert count == 2

    async def test_a_stale_correction_is_a_conflict_with_the_current_version(
        self, client: Client, factory: Factory
    ) -> None:
        scene = await factory.scene()
        [created] = await push(
            client, scene, [{"client_id": "a", "patient_id": str(scene.patient), "entry": temperature(38)}]
        )
        fix = {"client_id": "b", "op": "correct", "entry_id": created["entry_id"], "base_version": 1,
               "entry": temperature(37.5), "reason": "re-measured"}  # fmt: skip
        stale = {**fix, "client_id": "c", "entry": temperature(37.9)}
        results = await push(client, scene, [fix, stale])
        assert [r["result"] for r in results] == ["applied", "conflict"]
        assert results[1]["current"]["version"] == 2
        assert results[1]["current"]["body"]["value"] == 37.5
        error = {"client_id": "d", "op": "entered_in_error", "entry_id": created["entry_id"], "base_version": 2}
        assert (await push(client, scene, [error]))[0]["version"] == 3


class TestPull:
    async def test_pages_by_cursor_in_change_order(self, client: Client, factory: Factory) -> None:
        scene = await factory.scene()
        other = await factory.scene()  # another facility's patient: never synced here
        changes = [
            {"client_id": f"n{i}", "patient_id": str(scene.patient), "entry": temperature(36 + i / 10)}
            for i in range(5)
        ]
        await push(client, scene, changes)
        await client.post(f"/v1/patients/{other.patient}/record", json=temperature(37), headers=other.chw.headers)
        seen: list[dict[str, Any]] = []
        patients: list[str] = []
        cursor = "0"
        while True:
            response = await client.get("/v1/sync", params={"since": cursor, "limit": 2}, headers=scene.chw.headers)
            assert response.status_code == 200, response.text
            page = response.json()
            seen += page["changes"]
            patients += [p["id"] for p in page["patients"]]
            cursor = page["cursor"]
            if not page["more"]:
                break
        assert [c["body"]["value"] for c in seen] == [36.0, 36.1, 36.2, 36.3, 36.4]
        assert {c["patient_id"] for c in seen} == {str(scene.patient)}
        assert patients == [str(scene.patient)]  # registered here; the other facility's never
        renamed = await client.patch(
            f"/v1/patients/{scene.patient}", json={"names": [{"text": "Sok Dara"}]}, headers=scene.chw.headers
        )
        assert renamed.status_code == 200, renamed.text
        update = (await client.get("/v1/sync", params={"since": cursor}, headers=scene.chw.headers)).json()
        assert [p["names"][0]["text"] for p in update["patients"]] == ["Sok Dara"]
        cursor = update["cursor"]
        empty = await client.get("/v1/sync", params={"since": cursor}, headers=scene.chw.headers)
        assert empty.json() == {"changes": [], "patients": [], "cursor": cursor, "more": False}

    async def test_a_page_audits_each_patient_it_touches_once(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        """One event per patient in the page (not the look-ahead change that tells `more`), in the
        order the page first touches them; an empty page audits nothing."""
        scene = await factory.scene()
        first, second = scene.patient, await factory.patient(scene.post, token=scene.chw.token)
        for patient, value in ((first, 36.5), (second, 36.6), (first, 36.7)):
            await push(client, scene, [{"client_id": f"a{value}", "patient_id": str(patient),
                                        "entry": temperature(value)}])  # fmt: skip

        async def pull(cursor: str) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
            request_id = f"sync-audit-{uuid.uuid4().hex}"
            response = await client.get(
                "/v1/sync",
                params={"since": cursor, "limit": 3},
                headers={**scene.chw.headers, "X-Request-ID": request_id},
            )
            assert response.status_code == 200, response.text
            rows = await db.fetch(
                """SELECT actor_user_id, actor_role, facility_id, patient_id, action, resource_type, resource_id,
                          purpose, channel, outcome FROM audit_events WHERE request_id = $1 ORDER BY id""",
                request_id,
            )
            return response.json(), [tuple(r) for r in rows]

        def event(patient: uuid.UUID) -> tuple[Any, ...]:
            return (scene.chw.user_id, "chw", None, patient, "search", "Record", None, "sync", "app", "success")

        registered, events = await pull("0")  # both registrations, then the first's first entry
        assert ([p["id"] for p in registered["patients"]], registered["more"]) == ([str(first), str(second)], True)
        assert events == [event(first), event(second)]
        entries, events = await pull(registered["cursor"])
        assert [c["patient_id"] for c in entries["changes"]] == [str(second), str(first)]
        assert events == [event(second), event(first)]
        empty, events = await pull(entries["cursor"])
        assert (empty["changes"], empty["patients"], events) == ([], [], [])

    async def test_a_page_carries_each_patient_as_a_read_gives_it(self, client: Client, factory: Factory) -> None:
        """The page's patients (read with the feed, in its one statement) are what GET /v1/patients/{id}
        answers: every field, identifiers included, and in feed order among entries of other kinds."""
        scene = await factory.scene()
        phone = f"+8551277{secrets.randbelow(10**5):05d}"
        ids = [{"system": "urn:kh:hid", "value": f"HID-{uuid.uuid4().hex[:8]}"},
               {"system": "urn:kh:nid", "value": f"NID-{uuid.uuid4().hex[:8]}"}]  # fmt: skip
        second = await factory.patient(scene.post, token=scene.chw.token, phone=phone, identifiers=ids, sex="female")
        await push(client, scene, [{"client_id": "p", "patient_id": str(second), "entry": temperature(37)}])
        page = (await client.get("/v1/sync", headers=scene.chw.headers)).json()
        assert [p["id"] for p in page["patients"]] == [str(scene.patient), str(second)]
        for synced in page["patients"]:
            read = await client.get(f"/v1/patients/{synced['id']}", headers=scene.chw.headers)
            assert read.status_code == 200, read.text
            assert synced == read.json()
        assert sorted((i["system"], i["value"]) for i in page["patients"][1]["identifiers"]) == sorted(
            (i["system"], i["value"]) for i in ids
        )
        assert [c["patient_id"] for c in page["changes"]] == [str(second)]

    async def test_a_page_is_read_and_audited_outside_a_transaction(
        self, client: Client, factory: Factory, db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No BEGIN/COMMIT round trips around a page (api.transaction ONE_READ): its audit rows are
        committed by the statement that reads it, before the answer leaves."""
        from domain.record import sync

        scene = await factory.scene()
        seen: list[bool] = []
        pull = sync.pull

        async def watched(conn: Any, *args: Any, **kwargs: Any) -> Any:
            page = await pull(conn, *args, **kwargs)
            seen.append(conn.is_in_transaction())
            return page

        monkeypatch.setattr(sync, "pull", watched)
        request_id = f"sync-autocommit-{uuid.uuid4().hex}"
        response = await client.get("/v1/sync", headers={**scene.chw.headers, "X-Request-ID": request_id})
        assert response.status_code == 200, response.text
        assert seen == [False]
        audited = await db.fetch("SELECT patient_id FROM audit_events WHERE request_id = $1", request_id)
        assert [r["patient_id"] for r in audited] == [scene.patient]

    async def test_msgpack_is_smaller_and_bad_cursors_refused(self, client: Client, factory: Factory) -> None:
        scene = await factory.scene()
        await push(client, scene, [{"client_id": "m", "patient_id": str(scene.patient), "entry": temperature(37)}])
        as_json = await client.get("/v1/sync", headers=scene.chw.headers)
        packed = await client.get("/v1/sync", headers={**scene.chw.headers, "Accept": "application/msgpack"})
        assert packed.headers["content-type"].startswith("application/msgpack")
        assert msgspec.msgpack.decode(packed.content)["changes"][0]["id"] == as_json.json()["changes"][0]["id"]
        assert len(packed.content) < len(as_json.content)
        for cursor in ("abc", "9" * 20, "1.9223372036854775808", "9223372036854775808", "\u00b2", "1."):
            bad = await client.get("/v1/sync", params={"since": cursor}, headers=scene.chw.headers)
            assert (bad.status_code, bad.json()["code"]) == (422, "invalid_cursor"), cursor
        # Longer than any query value may be: refused before it is read as a cursor.
        huge = await client.get("/v1/sync", params={"since": "9" * 5000}, headers=scene.chw.headers)
        assert (huge.status_code, huge.json()["errors"][0]["field"]) == (400, "since")
        specialist = await client.get("/v1/sync", headers=scene.specialist.headers)
        assert specialist.status_code == 403
        assert uuid.UUID(as_json.json()["changes"][0]["id"])


class TestHorizon:
    async def test_a_slow_transaction_is_never_skipped(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        """A change committed late, by a transaction that started first, still reaches the phone."""
        scene = await factory.scene()
        async with db.acquire() as slow:
            tx = slow.transaction()
            await tx.start()
            await slow.execute(
                """INSERT INTO record_entries (id, version, patient_id, kind, status, body, effective_at,
                                               author_user_id, author_role, channel)
                   VALUES ($1, 1, $2, 'note', 'current', $3, now(), $4, 'chw', 'app')""",
                uuid.uuid4(),
                scene.patient,
                {"text": "slow", "category": "progress"},
                scene.chw.user_id,
            )
            await push(
                client, scene, [{"client_id": "fast", "patient_id": str(scene.patient), "entry": temperature(37)}]
            )
            held = (await client.get("/v1/sync", headers=scene.chw.headers)).json()
            assert held["changes"] == []  # the fast change waits behind the open transaction
            await tx.commit()
        both = (await client.get("/v1/sync", params={"since": held["cursor"]}, headers=scene.chw.headers)).json()
        assert [c["kind"] for c in both["changes"]] == ["note", "observation"]

    async def test_an_unrelated_long_transaction_does_not_hold_sync_back(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        """Only the feed's own writers set the horizon: a transaction with an xid open in this
        database on another table (and, from the module fixture, one in another database)
        does not delay the phone."""
        scene = await factory.scene()
        async with db.acquire() as idle:
            tx = idle.transaction()
            await tx.start()
            await idle.execute("UPDATE facilities SET name = name WHERE id = $1", scene.post)
            assert await idle.fetchval("SELECT pg_current_xact_id_if_assigned()") is not None
            await push(
                client, scene, [{"client_id": "now", "patient_id": str(scene.patient), "entry": temperature(37)}]
            )
            page = (await client.get("/v1/sync", headers=scene.chw.headers)).json()
            assert [c["kind"] for c in page["changes"]] == ["observation"]
            await tx.rollback()

    async def test_a_rolled_back_savepoint_unregisters_its_writer(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        """A feed write undone by a savepoint no longer holds the horizon; the rest of the
        transaction's later feed writes register again."""
        scene = await factory.scene()
        async with db.acquire() as conn, conn.transaction():
            try:
                async with conn.transaction():
                    await conn.execute("UPDATE patients SET version = version WHERE id = $1", scene.patient)
                    raise RuntimeError("undo")
            except RuntimeError:
                pass
            registered = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            )
            assert registered == 0
            await push(client, scene, [{"client_id": "sp", "patient_id": str(scene.patient), "entry": temperature(37)}])
            page = (await client.get("/v1/sync", headers=scene.chw.headers)).json()
            assert [c["kind"] for c in page["changes"]] == ["observation"]

    async def test_a_cursor_never_passes_a_change_under_concurrent_writers(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        """Writers commit (or roll back) in a shuffled order while a phone pulls in a loop: every
        committed change reaches it exactly once, none that rolled back."""
        scene = await factory.scene()
        committed: set[str] = set()

        async def writer(i: int) -> None:
            async with db.acquire() as conn:
                tx = conn.transaction()
                await tx.start()
                entry_id = uuid.uuid4()
                await asyncio.sleep(random.random() / 50)
                await conn.execute(
                    """INSERT INTO record_entries (id, version, patient_id, kind, status, body, effective_at,
                                                   author_user_id, author_role, channel)
                       VALUES ($1, 1, $2, 'note', 'current', $3, now(), $4, 'chw', 'app')""",
                    entry_id,
                    scene.patient,
                    {"text": f"w{i}", "category": "progress"},
                    scene.chw.user_id,
                )
                await asyncio.sleep(random.random() / 10)
                if i % 5 == 0:
                    await tx.rollback()
                    return
                await tx.commit()
                committed.add(str(entry_id))

        seen: list[str] = []
        cursor = "0"

        async def pull_once() -> None:
            nonlocal cursor
            page = (await client.get("/v1/sync", params={"since": cursor}, headers=scene.chw.headers)).json()
            seen.extend(c["id"] for c in page["changes"])
            cursor = page["cursor"]

        writers = asyncio.gather(*(writer(i) for i in range(30)))
        while not writers.done():
            await pull_once()
            await asyncio.sleep(0.005)
        await writers
        await pull_once()
        assert sorted(seen) == sorted(committed)
