"""bench/mixed: the day of a reference centre (bench.mixed.MIX) against real server processes.

    python -m bench.mixed [--clients 64] [--processes 2] [--seconds 20] [--workers 2]

Seeds a scratch database (a reference centre with specialists open all week, a health post with
its patients and their records, a CHW, app sessions), starts `spean serve` with the product's
defaults (log level, pool sizes; only the worker count is set), and fires the mix from several
load-generator processes; then, in the same run and from the same processes, a trivial endpoint
(/health) for the ceiling. Prints req/s, p50 and p99 per kind and in total, beside /health's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import psutil

from bench.common import base_env, bench_environment, percentile, spean_server
from bench.mixed import MIX
from domain.identity import refresh, users
from domain.identity.tokens import issue_access_token
from infra.embedded import free_port
from infra.migrate import migrate

TZ = "Asia/Phnom_Penh"
_ENTRY_COLUMNS = [
    "id", "version", "patient_id", "kind", "status", "code", "body", "effective_at",
    "author_user_id", "author_role", "facility_id", "channel",
]  # fmt: skip
_ENTRY_COLUMNS = [
    "id", "version", "patient_id", "kind", "status", "code", "body", "effective_at",
    "author_user_id", "author_role", "facility_id", "channel",
]  # fmt: skip


async def seed(database_url: str, *, practitioners: int, patients: int, sessions: int, secret: str) -> dict[str, Any]:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        centre, post = uuid.uuid4(), uuid.uuid4()
        await conn.executemany(
            "INSERT INTO facilities (id, name, kind, timezone, country) VALUES ($1, $2, $3, $4, 'KH')",
            [(centre, "Mixed centre", "reference_centre", TZ), (post, "Mixed post", "health_post", TZ)],
        )
        chw = await users.ensure_user(conn, "+85512600000")
        await users.grant_role(conn, chw, post, "chw")
        patient_ids = [uuid.uuid4() for _ in range(patients)]
        await conn.copy_records_to_table(
            "patients",
            records=[(p, '[{"text": "Mixed"}]', "mixed", post) for p in patient_ids],
            columns=["id", "names", "search_text", "home_facility_id"],
        )
        today = datetime.now(UTC).date()
        pairs: list[tuple[str, str]] = []
        for i in range(practitioners):
            user_id = await users.ensure_user(conn, f"+855126{i:05d}")
            await users.grant_role(conn, user_id, centre, "specialist")
            practitioner_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO practitioners (id, user_id, name) VALUES ($1, $2, $3)", practitioner_id, user_id, f"Dr {i}"
            )
            await conn.executemany(
                """INSERT INTO availability_rules (id, practitioner_id, facility_id, weekday, start_local,
                                                   end_local, slot_minutes, valid_from)
                   VALUES ($1, $2, $3, $4, '00:00', '23:55', 5, $5)""",
                [(uuid.uuid4(), practitioner_id, centre, day, today) for day in range(1, 8)],
            )
            pairs.append((str(practitioner_id), str(patient_ids[i])))
        # Five vitals per patient over the last months, as the CHW recorded them.
        start = datetime.now(UTC) - timedelta(days=120)
        rows = [
            (uuid.uuid4(), 1, p, "observation", "current", "8867-4",
             f'{{"code":"8867-4","value":{60 + i * 7},"unit":"/min","display":"Heart rate","system":"http://loinc.org"}}',
             start + timedelta(days=20 * i), chw, "chw", post, "app")
            for p in patient_ids for i in range(5)
        ]  # fmt: skip
        await conn.copy_records_to_table(
            "record_entries",
            records=rows,
            columns=_ENTRY_COLUMNS,
        )
        tokens = []
        for i in range(sessions):
            user_id = await users.ensure_user(conn, f"+855127{i:05d}")
            tokens.append(await refresh.issue(conn, user_id, 30 * 24 * 3600))
        principal = await users.load_principal(conn, chw)
        await conn.execute("ANALYZE")  # a live database has statistics; a fresh one plans blind
    finally:
        await conn.close()
    zone = ZoneInfo(TZ)
    tomorrow = (datetime.now(UTC).astimezone(zone) + timedelta(days=1)).date()
    return {
        "chw_token": issue_access_token(principal, secret, 3600),
        "practitioners": [p for p, _ in pairs],
        "pairs": pairs,
        "patients": [str(p) for p in patient_ids],
        "sessions": tokens,
        "sync_from": "0",
        "tomorrow": tomorrow.isoformat(),
        "first_slot": datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone).isoformat(),
    }


def _fire(port: int, scene: Path, args: argparse.Namespace, seconds: float, *, trivial: bool) -> list[dict[str, Any]]:
    """The load processes, run at once; their JSON results."""
    clients = max(1, args.clients // args.processes)
    command = [
        sys.executable, "-m", "bench.mixed.load", "--port", str(port), "--clients", str(clients),
        "--seconds", str(seconds), "--warmup", str(args.warmup), "--scene", str(scene),
        "--processes", str(args.processes), *(["--trivial"] if trivial else []),
    ]  # fmt: skip
    procs = [
        subprocess.Popen([*command, "--index", str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(args.processes)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + args.warmup + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"load process failed ({proc.returncode})")
        results.append(json.loads(out))
    return results


def _cpu_seconds(server_pid: int, database: str) -> tuple[float, float]:
    """CPU seconds used so far by the server's processes, and by the PostgreSQL backends serving
    `database` (their process titles name it)."""

    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    server = psutil.Process(server_pid)
    app = used(server) + sum(used(child) for child in server.children(recursive=True))
    postgres = 0.0
    for process in psutil.process_iter(["name", "cmdline"]):
        title = " ".join(process.info["cmdline"] or ())
        if (process.info["name"] or "").startswith("postgres") and f" {database} " in f" {title} ":
            postgres += used(process)
    return app, postgres


def _merge(results: list[dict[str, Any]]) -> tuple[dict[str, list[float]], dict[str, dict[str, int]], float, float]:
    latencies: dict[str, list[float]] = {}
    statuses: dict[str, dict[str, int]] = {}
    for result in results:
        for kind, values in result["latencies"].items():
            latencies.setdefault(kind, []).extend(values)
        for kind, counts in result["statuses"].items():
            merged = statuses.setdefault(kind, {})
            for status, n in counts.items():
                merged[status] = merged.get(status, 0) + n
    elapsed = max(r["elapsed"] for r in results)
    cpu = sum(r["cpu"] for r in results) / max(r["wall"] for r in results)
    return latencies, statuses, elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64, help="keep-alive connections, over all processes")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--trivial-seconds", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--practitioners", type=int, default=50)
    parser.add_argument("--patients", type=int, default=2000)
    args = parser.parse_args()

    with bench_environment("spean-bench-mixed") as bench:
        scene = asyncio.run(
            seed(bench.database_url, practitioners=args.practitioners, patients=max(args.patients, args.practitioners),
                 sessions=args.clients + args.processes, secret=bench.secret)
        )  # fmt: skip
        scene_file = bench.folder / "scene.json"
        scene_file.write_text(json.dumps(scene))
        port = free_port()
        env = {
            **base_env(bench.database_url, bench.redis_url, bench.folder / "data", bench.secret),
            "SPEAN_AUTO_MIGRATE": "false",
        }
        env.pop("SPEAN_LOG_LEVEL")  # the product's default (info: an access log line per request)
        database = urlsplit(bench.database_url).path.lstrip("/")
        with spean_server(env, port, args.workers, bench.folder / "server.log") as server:
            before = _cpu_seconds(server.pid, database)
            mixed = _fire(port, scene_file, args, args.seconds, trivial=False)
            after = _cpu_seconds(server.pid, database)
            trivial = _fire(port, scene_file, args, args.trivial_seconds, trivial=True)
    answered = sum(r["exchanged"] for r in mixed)

    latencies, statuses, elapsed, load_cpu = _merge(mixed)
    trivial_latencies, _, trivial_elapsed, trivial_cpu = _merge(trivial)
    cores = os.cpu_count() or 1
    print(
        f"bench/mixed  workers={args.workers} clients={args.clients} processes={args.processes} "
        f"seconds={args.seconds:g} patients={len(scene['patients'])} cores={cores}"
    )
    # req/s counts answers that did what was asked (2xx); latencies are of every answer.
    print(f"  {'kind':14} {'share':>5} {'n':>7} {'ok/s':>8} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    everything: list[float] = []
    succeeded = 0
    for kind, share in MIX.items():
        values = latencies.get(kind, [])
        everything += values
        ok = sum(n for status, n in statuses.get(kind, {}).items() if status.startswith("2"))
        succeeded += ok
        print(
            f"  {kind:14} {share:4}% {len(values):7} {ok / elapsed:8.0f} "
            f"{percentile(values, 50) * 1000:8.1f} {percentile(values, 99) * 1000:8.1f}  {statuses.get(kind, {})}"
        )
    total = succeeded / elapsed
    ceiling = len(trivial_latencies.get("trivial", [])) / trivial_elapsed
    print(
        f"  {'total':14} {100:4}% {len(everything):7} {total:8.0f} "
        f"{percentile(everything, 50) * 1000:8.1f} {percentile(everything, 99) * 1000:8.1f}"
    )
    print(
        f"  {'GET /health':14} {'':5} {len(trivial_latencies.get('trivial', [])):7} {ceiling:8.0f} "
        f"{percentile(trivial_latencies.get('trivial', []), 50) * 1000:8.1f} "
        f"{percentile(trivial_latencies.get('trivial', []), 99) * 1000:8.1f}  (trivial endpoint, same run)"
    )
    print(f"  ratio          {total / ceiling:10.2f}   mixed req/s per /health req/s")
    print(f"  built for      {2240:10}   req/s (10 x Medplum's ~112 mixed req/s per vCPU): {total / 2240:.2f} of it")
    print(
        f"  load generator {load_cpu / cores * 100:9.0f}%   of the cores during the mix, "
        f"{trivial_cpu / cores * 100:.0f}% during /health"
    )
    # Over the whole mix phase, warm-up included: where the CPU went, per answer.
    app_ms, db_ms = ((a - b) * 1000 / max(answered, 1) for a, b in zip(after, before, strict=True))
    print(f"  CPU/request    {app_ms:10.1f} ms in the workers, {db_ms:.1f} ms in PostgreSQL (this database's backends)")
    for status, text in sorted({k: v for r in mixed for k, v in r["errors"].items()}.items()):
        print(f"  first {status}: {text}")


if __name__ == "__main__":
    main()
