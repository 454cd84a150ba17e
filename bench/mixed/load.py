"""The mixed load generator, run as its own process: C keep-alive clients, each sending the day's
mix (bench.mixed.MIX) in a fixed shuffled order, for D seconds after a warm-up.

Reads the scene (tokens, ids) as JSON from a file, prints one JSON line: latencies per kind,
statuses per kind, the measured seconds, and this process's own CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import json
import random
import resource
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import http_request

# Phones' HTTP stacks (OkHttp, NSURLSession) ask for gzip on their own.
_COMMON = "Host: bench\r\nAccept-Encoding: gzip\r\n"
_SLOT_MINUTES = 5
_SLOTS_PER_DAY = 286


def _get(path: str, token: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\n{_COMMON}Authorization: Bearer {token}\r\n\r\n".encode()


def _post(path: str, body: dict[str, Any], token: str | None, key: str) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\n{_COMMON}{auth}Idempotency-Key: {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


class Day:
    """Builds each kind's next request from the scene; one per process (`index` of `processes`)."""

    def __init__(self, scene: dict[str, Any], index: int, processes: int, run: int = 0) -> None:
        self.scene = scene
        self.rng = random.Random(index)
        self.index = index
        self.processes = processes
        # Another run against the same database (--run) books other slots and sends other keys.
        self.bookings = itertools.count(run * 20_000)
        self.writes = itertools.count(run * 1_000_000)
        phases: list[list[str]] = scene["sessions"]  # a list of app sessions per run
        self.sessions = list(phases[run % len(phases)][index::processes])
        self.cursors: dict[int, str] = {}
        self.tomorrow = date.fromisoformat(scene["tomorrow"])
        self.midnight = datetime.fromisoformat(scene["first_slot"])

    def request(self, kind: str, client: int) -> bytes:
        s, rng = self.scene, self.rng
        chw = s["chw_token"]
        if kind == "slot search":
            practitioner = rng.choice(s["practitioners"])
            day = self.tomorrow + timedelta(days=rng.randrange(7))
            return _get(f"/v1/slots?practitioner_id={practitioner}&from={day}&to={day}&limit=50", chw)
        if kind == "booking":
            # Booking n of this process: its own (practitioner, slot), so no two requests collide.
            n = next(self.bookings) * self.processes + self.index
            practitioner, patient = s["pairs"][n % len(s["pairs"])]
            days, slot = divmod(n // len(s["pairs"]), _SLOTS_PER_DAY)
            start = self.midnight + timedelta(days=days, minutes=_SLOT_MINUTES * slot)
            body = {"patient_id": patient, "practitioner_id": practitioner, "mode": "video",
                    "start": start.astimezone(UTC).isoformat().replace("+00:00", "Z")}  # fmt: skip
            return _post("/v1/appointments", body, chw, f"mixed-b-{self.index}-{n}")
        if kind == "record read":
            return _get(f"/v1/patients/{rng.choice(s['patients'])}/record?limit=50", chw)
        if kind == "record write":
            n = next(self.writes)
            body = {"kind": "observation", "code": "8867-4", "value": 60 + n % 40, "unit": "/min"}
            return _post(f"/v1/patients/{rng.choice(s['patients'])}/record", body, chw, f"mixed-w-{self.index}-{n}")
        if kind == "fhir search":
            return _get(f"/fhir/Observation?patient={rng.choice(s['patients'])}&_count=20", chw)
        if kind == "sync page":
            return _get(f"/v1/sync?since={self.cursors.get(client, s['sync_from'])}&limit=100", chw)
        if kind == "sign-in":
            session = self.sessions[client % len(self.sessions)]
            return _post("/v1/auth/refresh", {"refresh_token": session}, None, f"mixed-s-{session[:12]}")
        if kind == "trivial":
            return b"GET /health HTTP/1.1\r\n" + _COMMON.encode() + b"\r\n"
        raise ValueError(kind)

    def answered(self, kind: str, client: int, status: int, body: bytes) -> None:
        """Carry what the next request of this client needs: the sync cursor, the rotated token."""
        if status != 200 or kind not in ("sync page", "sign-in"):
            return
        document = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
        if kind == "sync page":
            self.cursors[client] = document["cursor"]
        else:
            self.sessions[client % len(self.sessions)] = document["refresh_token"]


async def run(port: int, clients: int, seconds: float, warmup: float, order: list[str], day: Day) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {}
    statuses: dict[str, dict[int, int]] = {}
    exchanged = [0]  # every answer, warm-up included (for CPU per request)
    first_errors: dict[int, str] = {}  # what the server said, the first time each 5xx came
    started = time.perf_counter()
    measure_from = started + warmup
    stop_at = measure_from + seconds

    async def client(number: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        position = number * 7919  # each client starts elsewhere in the order
        try:
            while time.perf_counter() < stop_at:
                kind = order[position % len(order)]
                position += 1
                raw = day.request(kind, number)
                sent = time.perf_counter()
                status, body = await http_request(reader, writer, raw)
                done = time.perf_counter()
                day.answered(kind, number, status, body)
                exchanged[0] += 1
                if status >= 500 and status not in first_errors:
                    first_errors[status] = (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode(
                        "utf-8", "replace"
                    )[:300]
                if sent >= measure_from and done <= stop_at:
                    latencies.setdefault(kind, []).append(done - sent)
                    counts = statuses.setdefault(kind, {})
                    counts[status] = counts.get(status, 0) + 1
        finally:
            writer.close()

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(client(i) for i in range(clients)))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    elapsed = min(time.perf_counter(), stop_at) - measure_from
    return {
        "latencies": latencies,
        "statuses": statuses,
        "elapsed": elapsed,
        "cpu": cpu,
        "errors": first_errors,
        "exchanged": exchanged[0],
        "wall": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--scene", type=Path, required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--trivial", action="store_true", help="only the trivial endpoint (the ceiling)")
    parser.add_argument("--only", help="only this kind of the mix (its CPU per request alone)")
    parser.add_argument("--run", type=int, default=0, help="the how-many-th run against this database")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from bench.mixed import day_order

    scene = json.loads(args.scene.read_text())
    order = ["trivial"] if args.trivial else [args.only] if args.only else day_order(seed=args.index)
    result = asyncio.run(
        run(args.port, args.clients, args.seconds, args.warmup, order, Day(scene, args.index, args.processes, args.run))
    )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
