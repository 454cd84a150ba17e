"""bench/channels: USSD turns and inbound SMS webhooks per second, with their latency, through a
real server process, beside a trivial endpoint (GET /health) of the same server in the same run.

    python -m bench.channels [--clients 16] [--seconds 10] [--workers 1]

Seeds a health post, a reference centre with a specialist open all week and one patient phone
per client, and starts `spean serve` with a USSD secret and the Twilio sender pointed at the
local Twilio-speaking server of the tests (tests/twilio_server.py, in this process). Then, over
keep-alive connections:

- USSD: each client walks sessions as a gateway relays them (main menu → book → specialty → free
  times → back → back → consent → main). The gateway's budget is ~5-10 s per turn; Spean is
  built for p99 < 50 ms.
- SMS: each client sends signed Twilio webhooks from its phone (BOOK → the free times, 1 → the
  question, NO, MY, HELP), each a new MessageSid, and waits for the reply SMS to reach the
  Twilio server before sending the next. Measured: the webhook's answer, and "to reply" (webhook
  sent → reply SMS received by Twilio: the transaction, the commit, then the SDK's call).
  Twilio allows 15 s; Spean is built for p99 < 100 ms to reply.

USSD, SMS and GET /health run in alternating rounds, so that all meet the same background load
of a shared machine; the server's CPU per request is printed beside the latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from urllib.parse import urlencode

import asyncpg
import psutil
from twilio.request_validator import RequestValidator

from bench.common import Row, base_env, bench_environment, http_request, percentile, spean_server
from infra.embedded import free_port
from infra.migrate import migrate
from tests.twilio_server import Received, TwilioServer, running

TZ = "Asia/Phnom_Penh"
SECRET = "bench-ussd-secret"  # noqa: S105 - a throw-away server's gateway secret
WALK = ["", "1", "1*1", "1*1*0", "1*1*0*0", "1*1*0*0*3", "1*1*0*0*3*00"]  # every turn a CON
SMS_WALK = ["BOOK", "1", "NO", "MY", "HELP"]  # free times, the question, dropped, the list, help
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "bench-twilio-token"  # noqa: S105 - a throw-away server's webhook key
PUBLIC_BASE_URL = "https://spean.bench.example"


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


class _Replies:
    """Reply SMS as the Twilio server takes them (on its threads), handed to the waiting client."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: dict[str, asyncio.Future[float]] = {}

    def __call__(self, received: Received) -> None:
        future = self.waiting.pop(received.form["To"], None)
        if future is not None:
            self.loop.call_soon_threadsafe(future.set_result, received.at)


def _sms(phone: str, body: str) -> bytes:
    form = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": ACCOUNT_SID,
        "From": phone,
        "To": "+85523900900",
        "Body": body,
        "NumSegments": "1",
    }
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE_URL + "/v1/sms/inbound", form)
    encoded = urlencode(form).encode()
    return (
        f"POST /v1/sms/inbound HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"X-Twilio-Signature: {signature}\r\nContent-Length: {len(encoded)}\r\n\r\n"
    ).encode() + encoded


async def _sms_client(
    port: int, phone: str, until: float, replies: _Replies, answered: list[float], replied: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            for body in SMS_WALK:
                reply = replies.loop.create_future()
                replies.waiting[phone] = reply
                started = time.monotonic()
                status, answer = await http_request(reader, writer, _sms(phone, body))
                answered.append(time.monotonic() - started)
                if status != 200 or b"<Response" not in answer:
                    raise RuntimeError(f"unexpected webhook answer to {body!r}: {status} {answer[:120]!r}")
                replied.append(await asyncio.wait_for(reply, 15) - started)
    finally:
        writer.close()


def _report(name: str, latencies: list[float], seconds: float) -> tuple[float, float]:
    ms = [x * 1000 for x in latencies]
    rate, p99 = len(ms) / seconds, percentile(ms, 99)
    print(f"{name:<16} {rate:>8.0f}/s   p50 {percentile(ms, 50):6.1f} ms   p99 {p99:6.1f} ms   ({len(ms)} requests)")
    return rate, p99


def _server_cpu(pid: int) -> float:
    """CPU seconds the server (its supervisor and workers) has used so far: a per-request cost
    that a busy shared machine does not inflate the way it inflates latencies."""
    server = psutil.Process(pid)
    total = 0.0
    for process in (server, *server.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


async def _phase(
    port: int, pid: int, clients: int, seconds: float, rounds: int, phones: list[str], twilio: TwilioServer
) -> dict[str, tuple[float, float]]:
    """USSD turns, SMS webhooks and GET /health in alternating rounds, so that all meet the same
    background load of a shared machine (a single phase each would compare different moments)."""
    replies = _Replies(asyncio.get_running_loop())
    twilio.listeners.append(replies)
    ussd: list[float] = []
    answered: list[float] = []
    replied: list[float] = []
    health: list[float] = []
    spent = {"ussd": 0.0, "sms": 0.0, "health": 0.0}
    cpu = {"ussd": 0.0, "sms": 0.0, "health": 0.0}

    async def measure(kind: str, *clients_of_kind: Awaitable[None]) -> None:
        started, cpu_before = time.monotonic(), _server_cpu(pid)
        await asyncio.gather(*clients_of_kind)
        spent[kind] += time.monotonic() - started
        cpu[kind] += _server_cpu(pid) - cpu_before

    for _ in range(rounds):
        until = time.monotonic() + seconds / rounds
        await measure("ussd", *(_ussd_client(port, phones[i], until, ussd) for i in range(clients)))
        until = time.monotonic() + seconds / rounds
        await measure("sms", *(_sms_client(port, phones[i], until, replies, answered, replied) for i in range(clients)))
        until = time.monotonic() + seconds / rounds
        await measure("health", *(_health_client(port, until, health) for _ in range(clients)))
    turns, turn_p99 = _report("USSD turn", ussd, spent["ussd"])
    webhooks, webhook_p99 = _report("SMS webhook", answered, spent["sms"])
    _, reply_p99 = _report("SMS to reply", replied, spent["sms"])
    trivial, trivial_p99 = _report("GET /health", health, spent["health"])
    turn_cpu, trivial_cpu = 1000 * cpu["ussd"] / len(ussd), 1000 * cpu["health"] / len(health)
    sms_cpu = 1000 * cpu["sms"] / len(answered)
    print(
        f"server CPU per request: USSD turn {turn_cpu:.2f} ms, SMS webhook (with its reply) {sms_cpu:.2f} ms, "
        f"GET /health {trivial_cpu:.2f} ms"
    )
    print(
        f"ratios: USSD turns/s = {turns / trivial:.3f} x GET /health/s; "
        f"USSD p99 = {turn_p99 / trivial_p99:.1f} x GET /health p99; "
        f"CPU per turn = {turn_cpu / trivial_cpu:.1f} x GET /health (built for USSD p99 < 50 ms)"
    )
    print(
        f"ratios: SMS webhooks/s = {webhooks / trivial:.3f} x GET /health/s; "
        f"SMS webhook p99 = {webhook_p99 / trivial_p99:.1f} x GET /health p99; "
        f"to reply p99 {reply_p99:.1f} ms; "
        f"CPU per SMS = {sms_cpu / trivial_cpu:.1f} x GET /health (built for p99 < 100 ms to reply)"
    )
    return {
        "ussd": (turns, turn_p99),
        "sms": (webhooks, webhook_p99),
        "reply": (webhooks, reply_p99),
        "health": (trivial, trivial_p99),
    }


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="alternations of USSD, SMS and GET /health")
    args = parser.parse_args(argv)
    with bench_environment("spean-bench-channels") as env:
        phones = asyncio.run(seed(env.database_url, args.clients))
        with running(ACCOUNT_SID, AUTH_TOKEN) as twilio:
            server_env = {
                **base_env(env.database_url, env.redis_url, env.folder, env.secret),
                "SPEAN_USSD_SECRET": SECRET,
                "SPEAN_SMS_SENDER": "twilio",
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_FROM_NUMBER": "+85523900900",
                "TWILIO_API_BASE_URL": twilio.base_url,
                "SPEAN_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
                "SPEAN_SMS_HOURLY_BUDGET": str(10**9),  # the hour's counter lives in the shared Redis
            }
            port = free_port()
            with spean_server(server_env, port, args.workers, env.folder / "server.log") as server:
                print(
                    f"{args.clients} clients, {args.workers} worker(s), {args.seconds:.0f} s of each, "
                    f"in {args.rounds} alternating rounds"
                )
                got = asyncio.run(_phase(port, server.pid, args.clients, args.seconds, args.rounds, phones, twilio))
    shape = f"{args.clients} clients, {args.workers} worker(s)"
    (turns, turn_p99), (webhooks, webhook_p99), (_, reply_p99), (trivial, trivial_p99) = (
        got["ussd"],
        got["sms"],
        got["reply"],
        got["health"],
    )
    return [
        Row("channels", f"USSD turns/s ({shape})", turns, "/s", trivial, "GET /health"),
        Row("channels", "USSD turn p99", turn_p99, "ms", trivial_p99, "GET /health p99", False),
        Row("channels", f"SMS webhooks/s ({shape})", webhooks, "/s", trivial, "GET /health"),
        Row("channels", "SMS webhook p99", webhook_p99, "ms", trivial_p99, "GET /health p99", False),
        Row("channels", "SMS to reply p99 (webhook → reply at Twilio)", reply_p99, "ms", None, "", False),
    ]


def rows(quick: bool = False) -> list[Row]:
    """The figures for `make bench`'s table (bench.common.Row)."""
    return main(["--clients", "4", "--seconds", "1.5", "--rounds", "1"] if quick else [])


if __name__ == "__main__":
    main()
