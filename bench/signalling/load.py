"""Signalling load generator, run as its own process (one per 10,000 sockets: fd limits).

idle:    join every room in the plan (specialist on A, patient on B), print "ready", hold the
         sockets idle until a line arrives on stdin, then print a JSON summary.
hold:    the same with plain sockets to A (a bare server: no auth, no rooms), one per plan entry.
relay:   in each planned room the specialist admits the patient, then chats at a fixed total
         rate; prints the one-way latencies (sender and receiver share this process's clock).
         "relaying" and "relayed" lines mark the measured window (the caller reads the servers'
         CPU at each, so that joining and leaving the rooms is not counted per message).

Sockets are opened with a bounded number of joins in flight (`IN_FLIGHT`): the opening rate
follows what the servers can authenticate (each join is a PostgreSQL transaction), instead of a
burst whose tail waits in the servers' queues. A join the server refuses only for the moment
(its auth or join timeout ran out while it was starved of CPU by a loaded machine, or 1013: try
again) is retried, as the apps do, after a pause; how many were retried is in the summary, so a
run that needed it says so.
echo:    the same sends to a raw echo server, for the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

IN_FLIGHT = 32  # joins under way at once, per load process
RETRIES = 5
# What the server says when it could not take a socket in time or a dependency was away for a
# moment: the apps reconnect after a pause (README, "Video consultations").
_RETRYABLE = {"auth_timeout", "join_timeout", "redis_unavailable", "postgres_unavailable"}
retried = 0
join_seconds: list[float] = []


async def _open(url: str) -> ClientConnection:
    return await connect(url, open_timeout=60, ping_interval=None, max_queue=64)


async def _join_once(url: str, token: str, room: str) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await _open(f"{url}/v1/rtc")
    await ws.send(json.dumps({"type": "auth", "token": token}))
    await ws.send(json.dumps({"type": "join", "appointment_id": room}))
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "ready":
            return ws, message
        if message["type"] == "error":
            await ws.close()
            raise RefusedError(message)


class RefusedError(RuntimeError):
    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(message)
        self.code = str(message.get("code"))


async def _join(url: str, token: str, room: str) -> tuple[ClientConnection, dict[str, Any]]:
    global retried
    for attempt in range(RETRIES + 1):
        started = time.perf_counter()
        try:
            joined = await _join_once(url, token, room)
        except RefusedError as exc:
            if exc.code not in _RETRYABLE or attempt == RETRIES:
                raise
        except ConnectionClosedError as exc:  # closed before its `error` frame was read
            if exc.rcvd is None or exc.rcvd.code not in (4408, 1013) or attempt == RETRIES:
                raise
        else:
            join_seconds.append(time.perf_counter() - started)
            return joined
        retried += 1
        await asyncio.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


async def _gather_limited(coros: list[Any], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros))


async def idle(plan: list[dict[str, str]], a: str, b: str) -> None:
    started = time.perf_counter()
    sockets = await _gather_limited(
        [_join(a, r["specialist"], r["room"]) for r in plan] + [_join(b, r["patient"], r["room"]) for r in plan],
        IN_FLIGHT,
    )
    opened = time.perf_counter() - started
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for ws, _ in sockets:
        await ws.close()
    print(json.dumps({"sockets": len(sockets), "open_seconds": opened, **_join_figures()}), flush=True)


def _join_figures() -> dict[str, Any]:
    ordered = sorted(join_seconds) or [float("nan")]
    return {"retried": retried, "join_p50": ordered[len(ordered) // 2], "join_p99": ordered[len(ordered) * 99 // 100]}


async def hold(count: int, url: str) -> None:
    started = time.perf_counter()
    sockets = await _gather_limited([_open(url) for _ in range(count)], IN_FLIGHT)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for ws in sockets:
        await ws.close()
    print(json.dumps({"sockets": len(sockets), "open_seconds": time.perf_counter() - started}), flush=True)


async def relay(plan: list[dict[str, str]], a: str, b: str, rate: float, seconds: float) -> None:
    pairs = []

    async def admitted(patient: ClientConnection) -> None:
        while json.loads(await patient.recv())["type"] != "admitted":
            pass

    for room in plan:
        # Bounded waits: a lost message fails the run with a reason instead of hanging it.
        spec, _ = await asyncio.wait_for(_join(a, room["specialist"], room["room"]), 60)
        patient, ready = await asyncio.wait_for(_join(b, room["patient"], room["room"]), 60)
        await spec.send(json.dumps({"type": "admit", "peer": ready["peer"]}))
        try:
            await asyncio.wait_for(admitted(patient), 60)
        except TimeoutError:
            raise RuntimeError(f"no `admitted` within 60 s in room {room['room']}") from None
        pairs.append((spec, patient))
    latencies: list[float] = []
    interval = len(pairs) / rate
    stop_at = time.perf_counter() + seconds

    async def sender(ws: ClientConnection, offset: float) -> None:
        await asyncio.sleep(offset)
        while time.perf_counter() < stop_at:
            await ws.send(json.dumps({"type": "chat", "text": repr(time.perf_counter())}))
            await asyncio.sleep(interval)

    async def receiver(ws: ClientConnection) -> None:
        while time.perf_counter() < stop_at + 1:
            try:
                raw = await asyncio.wait_for(ws.recv(), 1.5)
            except TimeoutError:
                return
            message = json.loads(raw)
            if message["type"] == "chat":
                latencies.append(time.perf_counter() - float(message["text"]))

    tasks = [sender(s, i * interval / len(pairs)) for i, (s, _) in enumerate(pairs)]
    tasks += [receiver(p) for _, p in pairs]
    print("relaying", flush=True)
    await asyncio.gather(*tasks)
    print("relayed", flush=True)
    for spec, patient in pairs:
        await spec.send(json.dumps({"type": "end"}))
        await patient.close()
        await spec.close()
    print(json.dumps({"latencies": latencies, "seconds": seconds, **_join_figures()}), flush=True)


async def echo(url: str, connections: int, rate: float, seconds: float) -> None:
    sockets = [await _open(url) for _ in range(connections)]
    latencies: list[float] = []
    interval = connections / rate
    stop_at = time.perf_counter() + seconds

    async def run(ws: ClientConnection, offset: float) -> None:
        await asyncio.sleep(offset)

        async def read() -> None:
            while True:
                text = await ws.recv()
                latencies.append(time.perf_counter() - float(json.loads(text)["text"]))

        reader = asyncio.create_task(read())
        while time.perf_counter() < stop_at:
            await ws.send(json.dumps({"type": "chat", "text": repr(time.perf_counter())}))
            await asyncio.sleep(interval)
        await asyncio.sleep(0.5)
        reader.cancel()

    await asyncio.gather(*(run(ws, i * interval / connections) for i, ws in enumerate(sockets)))
    for ws in sockets:
        await ws.close()
    print(json.dumps({"latencies": latencies, "seconds": seconds}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["idle", "hold", "relay", "echo"])
    parser.add_argument("--plan", type=Path)
    parser.add_argument("--a", default="")
    parser.add_argument("--b", default="")
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=100)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    plan = json.loads(args.plan.read_text()) if args.plan else []
    if args.mode == "idle":
        asyncio.run(idle(plan, args.a, args.b))
    elif args.mode == "hold":
        asyncio.run(hold(len(plan), args.a))
    elif args.mode == "relay":
        asyncio.run(relay(plan, args.a, args.b, args.rate, args.seconds))
    else:
        asyncio.run(echo(args.a, args.connections, args.rate, args.seconds))


if __name__ == "__main__":
    main()
