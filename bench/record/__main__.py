"""bench/record: Patient/$everything for a patient with 1,000 record entries, and the offline sync
feed of a health post with 5,000 patients, through a real server process.

    python -m bench.record [--patients 5000] [--entries 1000] [--per-patient 2] [--rounds 20]

Prints p50/p99 latency and bytes on the wire as JSON and as MessagePack, uncompressed; then, for
each coding the server offers (api.compression: br, zstd, gzip), the bytes it sends when asked for
that coding, how much smaller that is, and the CPU one compression of that body costs (the
server's own coder, timed here on the same body), with the latency of a few compressed rounds.
Beside each row, the CPU one answer cost the server and PostgreSQL's backends (steadier than the
latency on a shared machine: it is what p99 would be made of on an idle one).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import brotli
import httpx
import msgspec
import zstandard

from api.compression import CODINGS
from bench import cpu
from bench.common import Row, base_env, bench_environment, percentile, spean_server
from domain.identity import users
from domain.identity.tokens import issue_access_token
from infra.embedded import free_port
from infra.migrate import migrate

_COLUMNS = (
    "id", "version", "patient_id", "kind", "status", "code", "body", "effective_at",
    "author_user_id", "author_role", "facility_id", "channel",
)  # fmt: skip


def _observation(i: int) -> tuple[str, str]:
    if i % 2:
        return (
            "8310-5",
            f'{{"code":"8310-5","value":{36 + (i % 30) / 10},"unit":"Cel","display":"Body temperature","system":"http://loinc.org"}}',
        )
    return (
        "8867-4",
        f'{{"code":"8867-4","value":{60 + i % 40},"unit":"/min","display":"Heart rate","system":"http://loinc.org"}}',
    )


async def seed(database_url: str, patients: int, entries: int, per_patient: int, secret: str) -> tuple[str, str]:
    """A health post with `patients` patients, `per_patient` entries each, and one with `entries`."""
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        post = uuid.uuid4()
        await conn.execute(
            """INSERT INTO facilities (id, name, kind, timezone, country)
               VALUES ($1, 'Bench post', 'health_post', $2, 'KH')""",
            post,
            "Asia/Phnom_Penh",
        )
        chw = await users.ensure_user(conn, "+85512700000")
        await users.grant_role(conn, chw, post, "chw")
        ids = [uuid.uuid4() for _ in range(patients)]
        await conn.copy_records_to_table(
            "patients",
            records=[(p, '[{"text": "Bench"}]', "bench", post) for p in ids],
            columns=["id", "names", "search_text", "home_facility_id"],
        )
        start = datetime.now(UTC) - timedelta(days=365)
        rows = []
        counts = [entries] + [per_patient] * (patients - 1)
        for patient, count in zip(ids, counts, strict=True):
            for i in range(count):
                code, body = _observation(i)
                rows.append((uuid.uuid4(), 1, patient, "observation", "current", code, body,
                             start + timedelta(minutes=i), chw, "chw", post, "app"))  # fmt: skip
        await conn.copy_records_to_table("record_entries", records=rows, columns=_COLUMNS)
        await conn.execute("ANALYZE")  # a live database has statistics; a freshly loaded one plans blind
        principal = await users.load_principal(conn, chw)
    finally:
        await conn.close()
    return issue_access_token(principal, secret, 3600), str(ids[0])


async def _get(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> tuple[int, bytes, bytes]:
    """(status, body as sent on the wire, body decoded)."""
    response = await client.send(client.build_request("GET", url, headers=headers), stream=True)
    try:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    coding = response.headers.get("content-encoding")
    return response.status_code, raw, _DECODERS[coding](raw) if coding else raw


_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "br": brotli.decompress,
    "zstd": lambda raw: zstandard.ZstdDecompressor().decompress(raw, max_output_size=1 << 28),
}


def _cpu_ms(coding: str, body: bytes, repeat: int = 5) -> float:
    """CPU time of one compression of body with the server's coder, best of `repeat`."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        CODINGS[coding](body)
        best = min(best, time.process_time() - started)
    return best * 1000


async def measure(
    port: int, token: str, patient: str, rounds: int, server_pid: int, database: str
) -> dict[str, dict[str, list[float]]]:
    """Per request kind and Accept-Encoding (`identity` first): latencies, wire bytes, CPU ms of one
    compression, and the CPU each answer cost the server and PostgreSQL (`served`: [app, db] ms)."""
    results: dict[str, dict[str, list[float]]] = {}
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for accept in ("application/json", "application/msgpack"):
            for name in ("everything", "sync"):
                if name == "everything" and accept != "application/json":
                    continue  # FHIR answers application/fhir+json only
                for coding in ("identity", *CODINGS):
                    headers = {"Authorization": f"Bearer {token}", "Accept": accept, "Accept-Encoding": coding}
                    stats: dict[str, list[float]] = {"latency": [], "bytes": [], "plain": [], "cpu": []}
                    before = cpu.server_and_postgres(server_pid, database)
                    for _ in range(rounds if coding == "identity" else max(1, rounds // 4)):
                        urls = [f"/fhir/Patient/{patient}/$everything?_count=1000"] if name == "everything" else []
                        cursor = "0"
                        while True:
                            url = urls.pop() if urls else f"/v1/sync?since={cursor}&limit=1000"
                            started = time.perf_counter()
                            status, raw, body = await _get(client, url, headers)
                            stats["latency"].append(time.perf_counter() - started)
                            assert status == 200, body[:500]
                            stats["bytes"].append(len(raw))
                            stats["plain"].append(len(body))
                            if coding != "identity" and len(stats["cpu"]) < 3:
                                stats["cpu"].append(_cpu_ms(coding, body))
                            if name == "everything":
                                break
                            page = msgspec.json.decode(body) if accept == "application/json" else _unpack(body)
                            cursor = str(page["cursor"])
                            if not page["more"]:
                                break
                    after = cpu.server_and_postgres(server_pid, database)
                    stats["served"] = [
                        (a - b) * 1000 / len(stats["latency"]) for a, b in zip(after, before, strict=True)
                    ]
                    results[f"{name} {accept.split('/')[1]} {coding}"] = stats
    return results


def _unpack(content: bytes) -> dict[str, object]:
    decoded: dict[str, object] = msgspec.msgpack.decode(content)
    return decoded


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--entries", type=int, default=1000, help="entries of the $everything patient")
    parser.add_argument("--per-patient", type=int, default=2, help="entries of each other patient")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    with bench_environment("spean-bench-record") as bench:
        token, patient = asyncio.run(
            seed(bench.database_url, args.patients, args.entries, args.per_patient, bench.secret)
        )
        port = free_port()
        env = {
            **base_env(bench.database_url, bench.redis_url, bench.folder / "data", bench.secret),
            "SPEAN_AUTO_MIGRATE": "false",
            # Sealed every second, not every minute: each row's CPU includes sealing its audit rows.
            "SPEAN_AUDIT_SEAL_INTERVAL": "1",
        }
        database = urlsplit(bench.database_url).path.lstrip("/")
        with spean_server(env, port, 1, bench.folder / "server.log") as server:
            results = asyncio.run(measure(port, token, patient, args.rounds, server.pid, database))
    total = args.entries + args.per_patient * (args.patients - 1)
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"bench/record  patients={args.patients} entries={total} rounds={args.rounds} cores={os.cpu_count()} "
        f"load average={load}"
    )
    print(
        f"  {'request':28} {'coding':8} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'bytes/resp':>11} {'x smaller':>9}"
        f" {'CPU ms':>7} {'app ms':>7} {'PG ms':>7}"
    )
    plain: dict[str, float] = {}
    for name, stats in results.items():
        kind, media, coding = name.rsplit(" ", 2)
        label = f"$everything ({args.entries:,}) {media}" if kind == "everything" else f"sync page (1,000) {media}"
        size = percentile(stats["bytes"], 50)
        if coding == "identity":
            plain[label] = size
        coder = f"{percentile(stats['cpu'], 50):7.2f}" if stats["cpu"] else f"{'':7}"
        print(
            f"  {label:28} {coding:8} {len(stats['latency']):5} {percentile(stats['latency'], 50) * 1000:8.1f} "
            f"{percentile(stats['latency'], 99) * 1000:8.1f} {size:11.0f} {plain[label] / size:9.1f} {coder}"
            f" {stats['served'][0]:7.1f} {stats['served'][1]:7.1f}"
        )
    print(
        "  (CPU ms: one compression of the median body with the server's coder; app and PG ms: CPU per answer of the\n"
        "   server and of PostgreSQL's backends for this database, compression included; compressed rows: few rounds)"
    )
    found: list[Row] = []
    for name, stats in results.items():
        kind, media, coding = name.rsplit(" ", 2)
        label = f"$everything ({args.entries:,}) {media}" if kind == "everything" else f"sync page (1,000) {media}"
        if coding == "identity":
            p99 = percentile(stats["latency"], 99) * 1000
            found.append(Row("record", f"{label} p99", p99, "ms", 100.0, "built for", False))
            found.append(Row("record", f"{label} CPU per answer", sum(stats["served"]), "ms", None, "", False,
                             f"app {stats['served'][0]:.1f} + PostgreSQL {stats['served'][1]:.1f}"))  # fmt: skip
        else:
            size = percentile(stats["bytes"], 50)
            found.append(Row("record", f"{label} bytes, {coding}", size, "B", plain[label], "uncompressed", False))
    return found


def rows(quick: bool = False) -> list[Row]:
    """The figures for `make bench`'s table (bench.common.Row)."""
    return main(["--patients", "50", "--entries", "100", "--rounds", "2"] if quick else [])


if __name__ == "__main__":
    main()
