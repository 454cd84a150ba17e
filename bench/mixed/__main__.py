"""bench/mixed: the day of a reference centre (bench.mixed.MIX) against real server processes.

    python -m bench.mixed [--clients 64] [--processes 2] [--seconds 20] [--workers 2] [--kind-seconds 4]

Seeds a scratch database (a reference centre with specialists open all week, a health post with
its patients and their records, a CHW, app sessions), starts `spean serve` with the product's
defaults (log level, pool sizes; only the worker count is set), and fires the mix from several
load-generator processes; then, in the same run and from the same processes, a trivial endpoint
(/health) for the ceiling. Prints req/s, p50 and p99 per kind and in total, beside /health's rate;
then each kind alone for a few seconds, for the CPU one request of that kind costs in the workers
and in PostgreSQL (steadier than req/s on a shared machine).
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

from bench import cpu
from bench.common import Row, base_env, bench_environment, percentile, spean_server
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


async def seed(
    database_url: str, *, practitioners: int, patients: int, sessions: int, phases: int, secret: str
) -> dict[str, Any]:
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
        # App sessions for each phase of the run: a phase that reused another's refresh tokens would
        # meet tokens already rotated (or replay their answers by Idempotency-Key).
        tokens: list[list[str]] = []
        for phase in range(phases):
            tokens.append([])
            for i in range(sessions):
                user_id = await users.ensure_user(conn, f"+855127{i:05d}")
                tokens[phase].append(await refresh.issue(conn, user_id, 30 * 24 * 3600))
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


def _fire(
    port: int,
    scene: Path,
    args: argparse.Namespace,
    seconds: float,
    *,
    run: int,
    trivial: bool = False,
    only: str | None = None,
) -> list[dict[str, Any]]:
    """The load processes, run at once; their JSON results. Each phase of a run has its own `run`
    number: its own Idempotency-Keys, slots and app sessions."""
    clients = max(1, args.clients // args.processes)
    command = [
        sys.executable, "-m", "bench.mixed.load", "--port", str(port), "--clients", str(clients),
        "--seconds", str(seconds), "--warmup", str(args.warmup), "--scene", str(scene),
        "--processes", str(args.processes), "--run", str(run), *(["--trivial"] if trivial else []),
        *(["--only", only] if only else []),
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


class Phase:
    """One load of the same server: what the clients saw, and the CPU each answer cost, warm-up
    included (the CPU window spans it), in the workers and in PostgreSQL."""

    def __init__(self, results: list[dict[str, Any]], before: tuple[float, float], after: tuple[float, float]) -> None:
        self.latencies: dict[str, list[float]] = {}
        self.statuses: dict[str, dict[str, int]] = {}
        for result in results:
            for kind, values in result["latencies"].items():
                self.latencies.setdefault(kind, []).extend(values)
            for kind, counts in result["statuses"].items():
                merged = self.statuses.setdefault(kind, {})
                for status, n in counts.items():
                    merged[status] = merged.get(status, 0) + n
        self.elapsed = max(r["elapsed"] for r in results)
        self.load_cpu = sum(r["cpu"] for r in results) / max(r["wall"] for r in results)
        self.errors = {k: v for r in results for k, v in r["errors"].items()}
        answered = max(1, sum(r["exchanged"] for r in results))
        self.app_ms, self.db_ms = ((a - b) * 1000 / answered for a, b in zip(after, before, strict=True))

    def ok(self, kind: str) -> int:
        return sum(n for status, n in self.statuses.get(kind, {}).items() if status.startswith("2"))

    def all_latencies(self) -> list[float]:
        return [value for values in self.latencies.values() for value in values]


def _run(
    server_pid: int, database: str, port: int, scene: Path, args: argparse.Namespace, seconds: float, **load: Any
) -> Phase:
    before = cpu.server_and_postgres(server_pid, database)
    results = _fire(port, scene, args, seconds, **load)
    return Phase(results, before, cpu.server_and_postgres(server_pid, database))


def _ms(values: list[float], pct: float) -> float:
    return percentile(values, pct) * 1000


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64, help="keep-alive connections, over all processes")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--trivial-seconds", type=float, default=5)
    parser.add_argument("--kind-seconds", type=float, default=4, help="each kind alone, for its CPU (0: skip)")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--practitioners", type=int, default=50)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument(
        "--kinds", default=",".join(MIX), help="the kinds to run alone, comma-separated (default: every kind)"
    )
    parser.add_argument("--no-mix", action="store_true", help="skip the mix: only /health and the kinds alone")
    args = parser.parse_args(argv)
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if unknown := [kind for kind in kinds if kind not in MIX]:
        parser.error(f"unknown kinds {unknown}; the kinds are {', '.join(MIX)}")

    with bench_environment("spean-bench-mixed") as bench:
        scene = asyncio.run(
            seed(bench.database_url, practitioners=args.practitioners, patients=max(args.patients, args.practitioners),
                 sessions=args.clients + args.processes, phases=2 + len(MIX), secret=bench.secret)
        )  # fmt: skip
        scene_file = bench.folder / "scene.json"
        scene_file.write_text(json.dumps(scene))
        port = free_port()
        env = {
            **base_env(bench.database_url, bench.redis_url, bench.folder / "data", bench.secret),
            "SPEAN_AUTO_MIGRATE": "false",
        }
        env.pop("SPEAN_LOG_LEVEL")  # the product's default (info: an access log line per request)
        # The audit trail is sealed every second instead of every minute, so that each phase's CPU
        # includes sealing its own audit rows (one round a minute lands in whichever phase runs).
        env["SPEAN_AUDIT_SEAL_INTERVAL"] = "1"
        database = urlsplit(bench.database_url).path.lstrip("/")
        with spean_server(env, port, args.workers, bench.folder / "server.log") as server:
            load = (server.pid, database, port, scene_file, args)
            mixed = _run(*load, 0.5 if args.no_mix else args.seconds, run=0)
            trivial = _run(*load, args.trivial_seconds, run=1, trivial=True)
            alone = {
                kind: _run(*load, args.kind_seconds, run=2 + n, only=kind)
                for n, kind in enumerate(MIX) if kind in kinds
            } if args.kind_seconds else {}  # fmt: skip
    return _report(args, scene, mixed, trivial, alone)


def _report(
    args: argparse.Namespace, scene: dict[str, Any], mixed: Phase, trivial: Phase, alone: dict[str, Phase]
) -> list[Row]:
    cores = os.cpu_count() or 1
    print(
        f"bench/mixed  workers={args.workers} clients={args.clients} processes={args.processes} "
        f"seconds={args.seconds:g} patients={len(scene['patients'])} cores={cores} load average={_load_average()}"
    )
    # req/s counts answers that did what was asked (2xx); latencies are of every answer.
    print(f"  {'kind':14} {'share':>5} {'n':>7} {'ok/s':>8} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for kind, share in MIX.items():
        values = mixed.latencies.get(kind, [])
        print(
            f"  {kind:14} {share:4}% {len(values):7} {mixed.ok(kind) / mixed.elapsed:8.0f} "
            f"{_ms(values, 50):8.1f} {_ms(values, 99):8.1f}  {mixed.statuses.get(kind, {})}"
        )
    everything = mixed.all_latencies()
    total = sum(mixed.ok(kind) for kind in MIX) / mixed.elapsed
    health = trivial.latencies.get("trivial", [])
    ceiling = len(health) / trivial.elapsed
    print(
        f"  {'total':14} {100:4}% {len(everything):7} {total:8.0f} "
        f"{_ms(everything, 50):8.1f} {_ms(everything, 99):8.1f}"
    )
    print(
        f"  {'GET /health':14} {'':5} {len(health):7} {ceiling:8.0f} {_ms(health, 50):8.1f} {_ms(health, 99):8.1f}"
        "  (trivial endpoint, same run)"
    )
    print(f"  ratio          {total / ceiling:10.2f}   mixed req/s per /health req/s")
    print(
        f"  built for      {BUILT_FOR:10}   req/s (10 x Medplum's ~112 mixed req/s per vCPU): "
        f"{total / BUILT_FOR:.2f} of it"
    )
    print(
        f"  load generator {mixed.load_cpu / cores * 100:9.0f}%   of the cores during the mix, "
        f"{trivial.load_cpu / cores * 100:.0f}% during /health"
    )
    print(f"  CPU/request    {mixed.app_ms:10.2f} ms in the workers, {mixed.db_ms:.2f} ms in PostgreSQL (mix)")
    print(f"  CPU/request    {trivial.app_ms:10.2f} ms in the workers for GET /health")
    for status, text in sorted(mixed.errors.items()):
        print(f"  first {status}: {text}")
    rows = [
        Row("mixed", f"mixed answers/s ({args.workers} workers, {args.clients} clients)", total, "/s", ceiling,
            "GET /health"),
        Row("mixed", "mixed answers/s", total, "/s", BUILT_FOR, "built for"),
        Row("mixed", "mixed p99", _ms(everything, 99), "ms", None, "", False),
        Row("mixed", "app CPU per answer (mix)", mixed.app_ms, "ms", trivial.app_ms, "GET /health", False),
        Row("mixed", "PostgreSQL CPU per answer (mix)", mixed.db_ms, "ms", None, "", False),
    ]  # fmt: skip
    if alone:
        # Each kind alone: its CPU per request, app and database (what a mix of any proportions costs).
        print(f"  each kind alone ({args.kind_seconds:g} s each): CPU per answer")
        print(f"  {'kind':14} {'ok/s':>8} {'p99 ms':>8} {'app ms':>8} {'PG ms':>8} {'x /health':>9}  statuses")
        weighted = 0.0
        for kind, phase in alone.items():
            values = phase.latencies.get(kind, [])
            weighted += MIX[kind] / 100 * (phase.app_ms + phase.db_ms) if len(alone) == len(MIX) else 0
            print(
                f"  {kind:14} {phase.ok(kind) / phase.elapsed:8.0f} {_ms(values, 99):8.1f} {phase.app_ms:8.2f} "
                f"{phase.db_ms:8.2f} {phase.app_ms / trivial.app_ms:9.1f}  {phase.statuses.get(kind, {})}"
            )
            rows.append(
                Row("mixed", f"app CPU per {kind} (alone)", phase.app_ms, "ms", trivial.app_ms, "GET /health", False,
                    f"+ {phase.db_ms:.2f} ms PostgreSQL")
            )  # fmt: skip
        if weighted:
            print(
                f"  weighted by the mix: {weighted:.2f} ms of CPU per answer, app and PostgreSQL: at most "
                f"{cores / weighted * 1000:.0f} answers/s on {cores} cores if nothing else ran"
            )
    return rows


BUILT_FOR = 2240


def _load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def rows(quick: bool = False) -> list[Row]:
    """The figures for `make bench`'s table (bench.common.Row)."""
    small = ["--clients", "8", "--seconds", "2", "--trivial-seconds", "1", "--kind-seconds", "0.5", "--warmup", "0.5",
             "--practitioners", "5", "--patients", "50"]  # fmt: skip
    return main(small if quick else [])


if __name__ == "__main__":
    main()
