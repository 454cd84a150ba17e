"""bench/channels: USSD turns per second and latency per turn through a real server process,
beside a trivial endpoint (GET /health) of the same server in the same run.

    python -m bench.channels [--clients 16] [--seconds 10] [--workers 1]

Seeds a health post, a reference centre with a specialist open all week and one patient phone
per client, starts `spean serve` with a USSD secret, then has each client walk USSD sessions as a
gateway relays them (main menu → book → specialty → free times → back → back → consent → main),
over keep-alive connections. The gateway's budget is ~5-10 s per turn; Spean is built for p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlencode

import asyncpg

from bench.common import Row, base_env, bench_environment, http_request, percentile, spean_server
from infra.embedded import free_port
from infra.migrate import migrate

TZ = "Asia/Phnom_Penh"
SECRET = "bench-ussd-secret"  # noqa: S105 - a throw-away server's gateway secret
WALK = ["", "1", "1*1", "1*1*0", "1*1*0*0", "1*1*0*0*3", "1*1*0*0*3*00"]  # every turn a CON


async def seed(database_url: str, phones: int) -> list[str]:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        centre, post, practitioner, user = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await conn.executemany(
            "INSERT INTO facilities (id, name, kind, timezone, country) VALUES ($1, $2, $3, $4, 'KH')",
            [(centre, "Bench centre", "reference_centre", TZ), (post, "Bench post", "health_post", TZ)],
        )
        await conn.execute(
            "INSERT INTO referral_links (from_facility_id, to_facility_id) VALUES ($1, $2)", post, centre
        )
        await conn.execute("INSERT INTO users (id, phone) VALUES ($1, '+85512900000')", user)
        await conn.execute(
            "INSERT INTO practitioners (id, user_id, name, specialties) VALUES ($1, $2, 'Dr Bench', '{cardiology}')",
            practitioner,
            user,
        )
        await conn.executemany(
            """INSERT INTO availability_rules (id, practitioner_id, facility_id, weekday, start_local, end_local,
                                               slot_minutes, valid_from)
               VALUES ($1, $2, $3, $4, '00:00', '23:30', 30, $5)""",
            [(uuid.uuid4(), practitioner, centre, day, datetime.now(UTC).date()) for day in range(1, 8)],
        )
        numbers = [f"+8551280{i:04d}" for i in range(phones)]
        await conn.executemany(
            """INSERT INTO patients (id, names, search_text, home_facility_id, phone, preferred_language)
               VALUES ($1, '[{"text": "Bench"}]', 'bench', $2, $3, 'km')""",
            [(uuid.uuid4(), post, number) for number in numbers],
        )
    finally:
        await conn.close()
    return numbers


def _form(session_id: str, phone: str, text: str) -> bytes:
    body = urlencode(
        {"sessionId": session_id, "serviceCode": "*384*7#", "phoneNumber": phone, "networkCode": "45606", "text": text}
    ).encode()
    return (
        f"POST /v1/ussd HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"X-USSD-Secret: {SECRET}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


_HEALTH = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"


async def _ussd_client(port: int, phone: str, until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            session_id = uuid.uuid4().hex
            for text in WALK:
                started = time.perf_counter()
                status, body = await http_request(reader, writer, _form(session_id, phone, text))
                latencies.append(time.perf_counter() - started)
                if status != 200 or not body.startswith(b"CON "):
                    raise RuntimeError(f"unexpected turn {text!r}: {status} {body[:120]!r}")
    finally:
        writer.close()


async def _health_client(port: int, until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            started = time.perf_counter()
            status, _ = await http_request(reader, writer, _HEALTH)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"/health answered {status}")
    finally:
        writer.close()


def _report(name: str, latencies: list[float], seconds: float) -> None:
    ms = [x * 1000 for x in latencies]
    print(
        f"{name:<16} {len(ms) / seconds:>8.0f}/s   p50 {percentile(ms, 50):6.1f} ms   "
        f"p99 {percentile(ms, 99):6.1f} ms   ({len(ms)} requests)"
    )


async def _phase(port: int, clients: int, seconds: float, phones: list[str]) -> tuple[list[float], list[float]]:
    until = time.monotonic() + seconds
    ussd: list[float] = []
    await asyncio.gather(*(_ussd_client(port, phones[i], until, ussd) for i in range(clients)))
    _report("USSD turn", ussd, seconds)
    until = time.monotonic() + seconds
    health: list[float] = []
    await asyncio.gather(*(_health_client(port, until, health) for _ in range(clients)))
    _report("GET /health", health, seconds)
    return ussd, health


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    with bench_environment("spean-bench-channels") as env:
        phones = asyncio.run(seed(env.database_url, args.clients))
        server_env = {**base_env(env.database_url, env.redis_url, env.folder, env.secret), "SPEAN_USSD_SECRET": SECRET}
        port = free_port()
        with spean_server(server_env, port, args.workers, env.folder / "server.log"):
            print(f"{args.clients} clients, {args.workers} worker(s), {args.seconds:.0f} s per phase")
            ussd, health = asyncio.run(_phase(port, args.clients, args.seconds, phones))
    shape = f"{args.clients} clients, {args.workers} worker(s)"
    return [
        Row(
            "channels",
            f"USSD turns/s ({shape})",
            len(ussd) / args.seconds,
            "/s",
            len(health) / args.seconds,
            "GET /health",
        ),
        Row(
            "channels",
            "USSD turn p99",
            percentile(ussd, 99) * 1000,
            "ms",
            percentile(health, 99) * 1000,
            "GET /health p99",
            False,
        ),
    ]


def rows(quick: bool = False) -> list[Row]:
    """The figures for `make bench`'s table (bench.common.Row)."""
    return main(["--clients", "4", "--seconds", "1"] if quick else [])


if __name__ == "__main__":
    main()
