"""Where an idle socket's memory goes: tracemalloc snapshots of one in-process server, diffed.

    python -m bench.signalling.memory [--rooms 2000] [--top 25]

Runs one Spean worker (uvicorn, product defaults) inside this process with tracemalloc on, opens
`--rooms` rooms with both peers on it (two idle sockets each) from a load process, in two halves,
and prints the allocations that grew between the halves, per socket, by allocation site; with
the RSS growth per socket beside them (RSS also counts what tracemalloc cannot see: the C heap
of extensions that allocate outside Python's allocator, and fragmentation).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import psutil

from bench.common import base_env, bench_environment
from bench.signalling.__main__ import seed
from infra.embedded import free_port


async def _serve_and_measure(port: int, plan_files: list[Path], top: int, frames: int, ws: str) -> None:
    import uvicorn

    from spean.app import create_app_from_env
    from spean.cli import websocket_options

    config = uvicorn.Config(
        create_app_from_env, factory=True, port=port, log_config=None, access_log=False, **websocket_options(ws)
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
        await asyncio.sleep(0.1)
    url = f"ws://127.0.0.1:{port}"
    loaders, points = [], []
    for plan in plan_files:
        loader = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.signalling.load",
            "idle",
            "--plan",
            str(plan),
            "--a",
            url,
            "--b",
            url,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert loader.stdout is not None
        assert (await loader.stdout.readline()).strip() == b"ready"
        loaders.append(loader)
        await asyncio.sleep(2)  # let the joins' last publishes and writes settle
        gc.collect()
        sockets = 2 * sum(len(json.loads(p.read_text())) for p in plan_files[: len(loaders)])
        points.append((sockets, psutil.Process().memory_info().rss, tracemalloc.take_snapshot() if frames else None))
    (n0, rss0, snap0), (n1, rss1, snap1) = points[0], points[-1]
    added = n1 - n0
    if snap0 is None or snap1 is None:
        print(f"sockets {n0} -> {n1}: RSS {(rss1 - rss0) / added / 1024:.1f} KiB/socket (not traced)")
        stats = []
    else:
        stats = snap1.compare_to(snap0, "traceback")
    if stats:
        traced = sum(s.size_diff for s in stats)
        print(
            f"sockets {n0} -> {n1}: RSS {(rss1 - rss0) / added / 1024:.1f} KiB/socket (tracemalloc's own"
            f" included), traced {traced / added / 1024:.1f} KiB/socket"
        )
    started = time.perf_counter()
    gc.collect()
    full_ms = (time.perf_counter() - started) * 1000
    print(
        f"a full garbage collection with {n1} sockets open: {full_ms:.0f} ms, {len(gc.get_objects()):,} tracked objects"
    )
    for stat in stats[:top]:
        print(f"\n{stat.size_diff / added:8.0f} B/socket  {stat.count_diff / added:6.2f} blocks/socket")
        for line in stat.traceback.format()[-2 * frames :]:
            print("     ", line)
    for loader in loaders:
        assert loader.stdin is not None
        loader.stdin.write(b"done\n")
        await loader.stdin.drain()
        await loader.wait()
    server.should_exit = True
    await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--frames", type=int, default=6, help="traceback depth; 0: RSS only, no tracemalloc")
    parser.add_argument("--ws", default="spean", help="`spean serve --ws` implementation")
    args = parser.parse_args()
    with bench_environment("spean-bench-rtc-mem") as bench:
        plan = asyncio.run(seed(bench.database_url, args.rooms, bench.secret))
        env = {**base_env(bench.database_url, bench.redis_url, bench.folder / "data", bench.secret)}
        env["SPEAN_LOG_LEVEL"] = "warning"  # uvicorn logs two lines per connection at info
        env["SPEAN_AUTO_MIGRATE"] = "false"
        os.environ.update(env)
        half = len(plan) // 2
        files = []
        for i, chunk in enumerate((plan[:half], plan[half:])):
            path = bench.folder / f"idle-{i}.json"
            path.write_text(json.dumps(chunk))
            files.append(path)
        if args.frames:
            tracemalloc.start(args.frames * 2)
        import uvloop  # what uvicorn runs on by default (loop="auto")

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve_and_measure(free_port(), files, args.top, args.frames, args.ws))


if __name__ == "__main__":
    main()
