"""bench/fhir_writes: what FHIR versions and writes cost the server, beside the app API's own
write and a plain FHIR read, through a real server process, one client, requests in sequence.

    python -m bench.fhir_writes [--rounds 300]

Prints, per operation, the server process's CPU per request (user + system, its own process tree)
and p50 latency: the app API's record write, the same observation as FHIR create, a FHIR read,
a conditional read answered 304, a vread, an update (a correction with If-Match), and a
transaction Bundle of 10 observations (per entry). CPU is the figure to compare (the machine is
shared and noisy); the ratios are to the app API write measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from typing import Any

import asyncpg
import httpx

from bench.common import base_env, bench_environment, percentile, process_tree_cpu, spean_server
from domain.identity import users
from domain.identity.tokens import issue_access_token
from infra.embedded import free_port
from infra.migrate import migrate

_LOINC, _UCUM = "http://loinc.org", "http://unitsofmeasure.org"


def _observation(patient: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": _LOINC, "code": "8310-5"}]},
        "valueQuantity": {"value": value, "unit": "Cel", "system": _UCUM, "code": "Cel"},
    }  # fmt: skip


async def _seed(database_url: str, secret: str) -> tuple[str, str]:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        post, patient = uuid.uuid4(), uuid.uuid4()
        await conn.execute(
            "INSERT INTO facilities (id, name, kind, timezone, country) VALUES ($1, 'Bench post', 'health_post',"
            " 'Asia/Phnom_Penh', 'KH')",
            post,
        )
        chw = await users.ensure_user(conn, "+85512700001")
        await users.grant_role(conn, chw, post, "chw")
        await conn.execute(
            """INSERT INTO patients (id, names, search_text, home_facility_id)
               VALUES ($1, '[{"text": "B"}]', 'b', $2)""",
            patient,
            post,
        )
        principal = await users.load_principal(conn, chw)
    finally:
        await conn.close()
    return issue_access_token(principal, secret, 3600), str(patient)


async def _measure(client: httpx.AsyncClient, pid: int, rounds: int, make: Any, per: int = 1) -> tuple[float, float]:
    """(server CPU ms per unit, p50 latency ms) of `rounds` requests made by `make(i)`."""
    latencies = []
    cpu = process_tree_cpu(pid)
    for i in range(rounds):
        method, url, kwargs, expect = make(i)
        started = time.perf_counter()
        response = await client.request(method, url, **kwargs)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == expect, response.text[:300]
    spent = process_tree_cpu(pid) - cpu
    return spent * 1000 / (rounds * per), percentile(latencies, 50) * 1000


def run(rounds: int) -> list[tuple[str, float, float]]:
    with bench_environment("bench-fhir-writes") as env:
        token, patient = asyncio.run(_seed(env.database_url, env.secret))
        port = free_port()
        server_env = base_env(env.database_url, env.redis_url, env.folder, env.secret)
        with spean_server(server_env, port, 1, env.folder / "server.log", ("--no-migrate",)) as proc:
            return asyncio.run(_cases(port, proc.pid, token, patient, rounds))


async def _cases(port: int, pid: int, token: str, patient: str, rounds: int) -> list[tuple[str, float, float]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
        app = {"kind": "observation", "code": "8310-5", "value": 37.0, "unit": "Cel"}
        created = (await client.post("/fhir/Observation", json=_observation(patient, 37.0))).json()
        path = f"/fhir/Observation/{created['id']}"
        etag = (await client.get(path)).headers["etag"]
        current = [1]  # the version the next update names (every update succeeds, in sequence)

        def update(i: int) -> tuple[str, str, dict[str, Any], int]:
            version = current[0]
            current[0] += 1
            body = {**created, "valueQuantity": {**created["valueQuantity"], "value": 36 + (i % 20) / 10}}
            return "PUT", path, {"json": body, "headers": {"If-Match": f'W/"{version}"'}}, 200

        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "POST", "url": "Observation"}, "resource": _observation(patient, 37.1)}
        ] * 10}  # fmt: skip
        cases = [
            ("app API POST /v1/patients/{id}/record", lambda i: (
                "POST", f"/v1/patients/{patient}/record", {"json": app}, 201), 1),
            ("FHIR create POST /fhir/Observation", lambda i: (
                "POST", "/fhir/Observation", {"json": _observation(patient, 37.2)}, 201), 1),
            ("FHIR read GET /fhir/Observation/{id}", lambda i: ("GET", path, {}, 200), 1),
            ("FHIR conditional read (If-None-Match) -> 304", lambda i: (
                "GET", path, {"headers": {"If-None-Match": etag}}, 304), 1),
            ("FHIR vread GET .../_history/1", lambda i: ("GET", f"{path}/_history/1", {}, 200), 1),
            ("FHIR update PUT (If-Match), a correction", update, 1),
            ("FHIR transaction of 10 Observations, per entry", lambda i: (
                "POST", "/fhir", {"json": bundle}, 200), 10),
        ]  # fmt: skip
        results = []
        for name, make, per in cases:
            count = rounds if per == 1 else max(1, rounds // per)
            await _measure(client, pid, min(20, count), make, per)  # warm up
            cpu, p50 = await _measure(client, pid, count, make, per)
            results.append((name, cpu, p50))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results = run(args.rounds)
    base = results[0][1]
    print(json.dumps({"load_average_1m": round(load, 1), "rounds": args.rounds}))
    for name, cpu, p50 in results:
        print(f"{name:52} server CPU {cpu:6.2f} ms/op  ({cpu / base:4.2f}x app API write)  p50 {p50:6.1f} ms")


if __name__ == "__main__":
    main()
