"""Each declared search parameter, modifier and prefix with FHIR's semantics: dates as ranges at
their precision, tokens in every form, strings, references, :missing; unknown parameters ignored
(and left out of the self link) or refused under `Prefer: handling=strict`; bad values a 400."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from api.fhir.errors import code_of
from tests.factory import Factory, new_phone
from tests.fhir.test_resources import Client, validate
from tests.fhir.world import World, build

Params = Sequence[tuple[str, str | int | float | bool | None]]


@pytest.fixture(scope="module")
async def world(factory: Factory) -> World:
    return await build(factory)


async def search(client: Client, path: str, headers: dict[str, str], params: Params) -> dict[str, Any]:
    response = await client.get(path, params=list(params), headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    validate(body)
    assert body.get("entry") != []  # an empty Bundle has no entry array
    for entry in body.get("entry", []):
        validate(entry["resource"])
    return body


def matched(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


async def test_date_prefixes_take_the_value_as_a_range(client: Client, world: World) -> None:
    h, o = world.chw.headers, world.obs

    async def obs(*dates: str) -> set[str]:
        bundle = await search(client, "/fhir/Observation", h, [("patient", world.a), *(("date", d) for d in dates)])
        return matched(bundle)

    assert await obs("2026") == {o["o1"], o["o2"], o["o3"]}
    assert await obs("2026-01") == {o["o1"]}
    assert await obs("eq2026-02-01") == {o["o2"]}
    assert await obs("2026-03-10T12:30") == {o["o3"]}  # a minute, in UTC without an offset
    assert await obs("eq2026-03-10T19:30+07:00") == {o["o3"]}
    assert await obs("2026-03-10T12:30:00.000Z") == {o["o3"]}
    assert await obs("2026-03-10T12:31") == set()
    assert await obs("ne2026-01") == {o["o2"], o["o3"]}
    assert await obs("gt2026-02-01") == {o["o3"]}  # o2 lies within the day: not after it
    assert await obs("ge2026-02-01") == {o["o2"], o["o3"]}
    assert await obs("lt2026-02-01") == {o["o1"]}
    assert await obs("le2026-02-01") == {o["o1"], o["o2"]}  # the whole day, not its first instant
    assert await obs("sa2026-01-15") == {o["o2"], o["o3"]}
    assert await obs("eb2026-02") == {o["o1"]}
    assert await obs("ge2026-01-16", "lt2026-03") == {o["o2"]}  # repeated: AND
    assert await obs("2026-01,2026-03") == {o["o1"], o["o3"]}  # comma: OR


async def test_periods_and_partial_birth_dates(client: Client, world: World) -> None:
    h = world.chw.headers

    async def find(path: str, *params: tuple[str, str]) -> set[str]:
        return matched(await search(client, path, h, [("organization", f"Organization/{world.post}"), *params]))

    assert await find("/fhir/Patient", ("birthdate", "1979")) == {world.a}
    assert await find("/fhir/Patient", ("birthdate", "1979-03-02")) == {world.a}
    assert await find("/fhir/Patient", ("birthdate", "1980")) == {world.b}  # the year alone
    assert await find("/fhir/Patient", ("birthdate", "1980-06-01")) == set()  # a year is not within a day
    assert await find("/fhir/Patient", ("birthdate", "ge1980-06-01")) == {world.b}
    assert await find("/fhir/Patient", ("birthdate", "lt1980")) == {world.a}
    assert await find("/fhir/Patient", ("birthdate:missing", "true")) == {world.c}

    async def encounters(value: str) -> set[str]:
        return matched(await search(client, "/fhir/Encounter", h, [("patient", world.a), ("date", value)]))

    assert await encounters("2026-03-10") == {world.encounter}  # 12:00-13:00 lies within the day
    assert await encounters("2026-03-10T12:30") == set()  # the period is not within that minute
    assert await encounters("ge2026-03-10T12:30") == {world.encounter}  # it ends after
    assert await encounters("sa2026-03-10T11:59") == {world.encounter}
    assert await encounters("sa2026-03-10T12:30") == set()  # it started before
    assert await encounters("eb2026-03-10T13:01") == {world.encounter}


async def test_last_updated_on_every_prefix(client: Client, world: World) -> None:
    h = world.chw.headers
    base = [("patient", world.a), ("code", "8310-5")]
    assert matched(await search(client, "/fhir/Observation", h, [*base, ("_lastUpdated", "ge2026")])) == {
        world.obs["o2"]
    }
    for value in ("lt2026", "le2025-12-31", "eb2000", "gt2199"):
        assert matched(await search(client, "/fhir/Observation", h, [*base, ("_lastUpdated", value)])) == set(), value


async def test_tokens_in_every_form(client: Client, world: World) -> None:
    h, o = world.chw.headers, world.obs

    async def obs(*params: tuple[str, str]) -> set[str]:
        return matched(await search(client, "/fhir/Observation", h, [("patient", world.a), *params]))

    weights = {o["o1"], o["o3"]}
    assert await obs(("code", "29463-7")) == weights
    assert await obs(("code", "http://loinc.org|29463-7")) == weights
    assert await obs(("code", "|29463-7")) == set()  # LOINC codes carry their system
    assert await obs(("code", "http://loinc.org|")) == {*weights, o["o2"]}
    assert await obs(("code", "http://snomed.info/sct|29463-7")) == set()
    assert await obs(("code:not", "29463-7")) == {o["o2"]}
    assert await obs(("code", "29463-7,8310-5")) == {*weights, o["o2"]}
    assert await obs(("category", "vital-signs"), ("status", "final")) == {*weights, o["o2"]}
    assert await obs(("status", "amended")) == set()

    async def patients(*params: tuple[str, str]) -> set[str]:
        scope = ("organization", f"Organization/{world.post}")
        return matched(await search(client, "/fhir/Patient", h, [scope, *params]))

    assert await patients(("identifier", f"urn:kh:health-id|{world.health_id}")) == {world.a}
    assert await patients(("identifier", world.health_id)) == {world.a}
    assert await patients(("identifier", "urn:kh:health-id|")) == {world.a}
    assert await patients(("identifier", f"urn:other|{world.health_id}")) == set()
    assert await patients(("identifier:missing", "true")) == {world.b, world.c}
    assert await patients(("gender", "female")) == {world.a}
    assert await patients(("gender", "http://hl7.org/fhir/administrative-gender|male")) == {world.b}

    async def conditions(*params: tuple[str, str]) -> set[str]:
        return matched(await search(client, "/fhir/Condition", h, [("subject", f"Patient/{world.a}"), *params]))

    assert await conditions(("clinical-status", "active")) == {world.hypertension}
    assert await conditions(("clinical-status", "resolved")) == {world.asthma}
    assert await conditions(("code", "http://hl7.org/fhir/sid/icd-10|I10")) == {world.hypertension}


async def test_strings_start_fold_exact_and_contain(client: Client, world: World) -> None:
    h = world.chw.headers

    async def patients(name: str, value: str) -> set[str]:
        scope = ("organization", f"Organization/{world.post}")
        return matched(await search(client, "/fhir/Patient", h, [scope, (name, value)]))

    assert await patients("name", "nguy") == {world.a}
    assert await patients("name", "phuong") == {world.a}  # a given name, without its accents
    assert await patients("name", "PHƯỢNG") == {world.a}
    assert await patients("name", "chan") == {world.b}
    assert await patients("name", "han") == set()  # starts, not contains
    assert await patients("name:contains", "han") == {world.b}
    assert await patients("name:exact", "Sok Chantha") == {world.b}
    assert await patients("name:exact", "sok chantha") == set()
    assert await patients("family", "sok") == {world.b}
    assert await patients("family", "ok") == set()
    assert await patients("family:contains", "ok") == {world.b}
    assert await patients("family:exact", "Nguyễn") == {world.a}
    assert await patients("family:exact", "Nguyen") == set()
    assert await patients("given", "thi") == {world.a}
    assert await patients("given", "chantha,dara") == {world.b}  # Dara is a text, not a given name


async def test_references_in_every_form(client: Client, world: World, settings: Any) -> None:
    h, o = world.chw.headers, world.obs
    everything = {o["o1"], o["o2"], o["o3"]}
    for params in (
        [("patient", world.a)],
        [("patient", f"Patient/{world.a}")],
        [("subject", f"Patient/{world.a}")],
        [("subject:Patient", world.a)],
        [("subject", f"{settings.public_base_url}/fhir/Patient/{world.a}")],
    ):
        assert matched(await search(client, "/fhir/Observation", h, params)) == everything, params
    in_encounter = [("patient", world.a), ("encounter", f"Encounter/{world.encounter}")]
    assert matched(await search(client, "/fhir/Observation", h, in_encounter)) == {o["o3"]}
    outside = [("patient", world.a), ("encounter:missing", "true")]
    assert matched(await search(client, "/fhir/Observation", h, outside)) == {o["o1"], o["o2"]}
    for nowhere in (f"Practitioner/{world.a}", "not-an-id", f"https://elsewhere.example/fhir/Patient/{world.a}"):
        assert matched(await search(client, "/fhir/Observation", h, [("subject", nowhere)])) == set(), nowhere


async def test_a_search_without_a_patient_finds_what_the_caller_may_read(
    client: Client, world: World, factory: Factory, db: asyncpg.Pool
) -> None:
    """Across patients, each entry is checked by the record's rule, and each patient whose
    entries are returned is audited with its basis."""
    found = await search(client, "/fhir/Observation", world.chw.headers, [("code", "29463-7"), ("_count", "1000")])
    mine = {world.obs["o1"], world.obs["o3"], world.b_weight}
    assert mine <= matched(found)
    user = await db.fetchval("SELECT user_id FROM practitioners WHERE id = $1", world.chw.practitioner_id)
    audited = await db.fetch(
        """SELECT resource_id, purpose FROM audit_events WHERE actor_user_id = $1 AND action = 'search'
             AND resource_type = 'Record' AND resource_id = ANY($2::text[])""",
        user, [world.a, world.b],
    )  # fmt: skip
    assert {(r["resource_id"], r["purpose"]) for r in audited} >= {(world.a, "treatment"), (world.b, "treatment")}
    stranger = await factory.staff(await factory.facility(), role="clinician")
    assert not matched(await search(client, "/fhir/Observation", stranger.headers, [("code", "29463-7")])) & mine


async def test_unknown_and_unsupported_parameters(client: Client, world: World) -> None:
    h = world.chw.headers
    strict = {**h, "Prefer": "handling=strict"}
    only_a = [("_id", world.a), ("foo", "bar"), ("name:text", "x"), ("_summary", "true")]
    lenient = await search(client, "/fhir/Patient", h, only_a)
    assert matched(lenient) == {world.a}  # _id is applied: never every patient
    self_link = next(link["url"] for link in lenient["link"] if link["relation"] == "self")
    assert self_link.endswith(f"/fhir/Patient?_id={world.a}")
    refusals: list[tuple[Params, str]] = [
        ([("foo", "bar")], "unknown_search_parameter"),
        ([("name:text", "x")], "unsupported_search_modifier"),
        ([("birthdate", "ap1979")], "unsupported_search_prefix"),
        ([("_summary", "true")], "unsupported_summary"),
        ([("_sort", "name")], "unsupported_sort"),
        ([("_include", "Patient:link")], "unsupported_include"),
    ]
    for params, code in refusals:
        refused = await client.get("/fhir/Patient", params=list(params), headers=strict)
        assert refused.status_code == 400, params
        validate(refused.json())
        assert code_of(refused.json()) == code, params
    ignored = await search(client, "/fhir/Patient", h, [("_id", world.a), ("birthdate", "ap1979")])
    assert matched(ignored) == {world.a}
    invalid: list[Params] = [
        [("birthdate", "1979-13")],
        [("birthdate", "xx1979")],
        [("birthdate", "1979-03-02T25:00Z")],
        [("gender:missing", "maybe")],
        [("_count", "-1")],
        [("_total", "all")],
        [("_elements", "name.given")],
        [("identifier", "a|b|c")],
    ]
    for params in invalid:
        refused = await client.get("/fhir/Patient", params=list(params), headers=h)  # lenient too: a 400
        assert refused.status_code == 400, params
        assert code_of(refused.json()) == "invalid_search_value", params
    missing = await client.get("/fhir/Slot", headers=h)
    assert missing.status_code == 400
    assert code_of(missing.json()) == "missing_field"


async def test_phone_in_national_or_international_form(client: Client, world: World, factory: Factory) -> None:
    phone = new_phone()  # +855...
    patient = str(await factory.patient(world.post, token=world.chw.token, phone=phone))
    national = "0" + phone.removeprefix("+855")
    for value in (phone, national):
        assert matched(await search(client, "/fhir/Patient", world.chw.headers, [("phone", value)])) == {patient}
    refused = await client.get("/fhir/Patient", params={"phone": "12"}, headers=world.chw.headers)
    assert (refused.status_code, code_of(refused.json())) == (400, "invalid_search_value")


async def test_a_search_naming_a_patient_reads_and_audits_alike_counted_or_not(
    client: Client, world: World, db: asyncpg.Pool
) -> None:
    """A page of one patient's entries is read, checked and audited in one statement, unless a
    total is asked (then by the general path): both find the same page and write the same event."""
    h = world.chw.headers
    user = await db.fetchval("SELECT user_id FROM practitioners WHERE id = $1", world.chw.practitioner_id)
    columns = """actor_user_id, actor_role, facility_id, patient_id, action, resource_type, resource_id, purpose,
                 channel, outcome"""

    async def read(params: Params) -> tuple[list[str], list[str], list[tuple[object, ...]]]:
        before = await db.fetchval("SELECT coalesce(max(id), 0) FROM audit_events")
        bundle = await search(client, "/fhir/Observation", h, params)
        events = await db.fetch(
            f"SELECT {columns} FROM audit_events WHERE id > $1 AND actor_user_id = $2 ORDER BY id", before, user
        )
        links = [link["relation"] for link in bundle["link"]]
        return [e["resource"]["id"] for e in bundle.get("entry", [])], links, [tuple(e) for e in events]

    for params in (
        [("patient", world.a)],
        [("patient", world.a), ("date", "ge2026-02-01")],
        [("patient", world.a), ("date", "lt2026-02-01")],
        [("patient", world.a), ("_count", "1")],
        [("patient", world.a), ("_sort", "-date"), ("_count", "2")],
        [("patient", world.a), ("code", "no-such-code")],
    ):
        one_statement = await read(params)
        counted = await read([*params, ("_total", "accurate")])
        assert one_statement[0] == counted[0], params
        assert one_statement[1] == counted[1], params
        assert one_statement[2] == counted[2], params
        assert [(e[4], e[5], e[6]) for e in one_statement[2]] == [("search", "Record", world.a)], params
