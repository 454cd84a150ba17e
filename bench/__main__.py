"""`make bench`: every bench in turn, then ONE table of each figure beside its limit measured in
the same run (pgbench for bookings, a raw echo server for signalling, a bare endpoint or client
for channels and notifications) and their ratio.

    python -m bench [--quick] [--only booking,signalling] [--results bench/RESULTS.md]

--quick runs every bench with small sizes (CI: a broken bench is caught; no figure is judged).
--results rewrites the table kept in that file (between its `<!-- bench-table -->` markers).
Each bench is called through its `rows(quick) -> list[bench.common.Row]`, the one stable
interface between them and this table.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Row, format_rows

BENCHES = ("booking", "record", "mixed", "signalling", "channels", "notifications", "feed_write")
_MARKERS = re.compile(r"(<!-- bench-table -->\n).*?(<!-- /bench-table -->)", re.S)


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated benches")
    parser.add_argument("--results", type=Path, help="rewrite the table kept in this Markdown file")
    args = parser.parse_args()
    rows: list[Row] = []
    timings: list[str] = []
    failed: list[str] = []
    for name in args.only.split(","):
        started = time.monotonic()
        print(f"\n== bench/{name}{' (quick)' if args.quick else ''}", flush=True)
        module = importlib.import_module(f"bench.{name}.__main__")
        try:
            rows.extend(module.rows(args.quick))
        except Exception:  # one broken bench must not lose the others' figures; the exit status says it
            traceback.print_exc()
            failed.append(name)
            rows.append(Row(name, "FAILED (see its output above)", float("nan"), ""))
        timings.append(f"{name} {time.monotonic() - started:.0f} s")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = f"{format_rows(rows)}\n\n{stamp}; {machine()}; {', '.join(timings)}\n"
    print(f"\n{table}")
    if args.results is not None:
        text = args.results.read_text()
        if not _MARKERS.search(text):
            raise SystemExit(f"{args.results} has no <!-- bench-table --> ... <!-- /bench-table --> block")
        args.results.write_text(_MARKERS.sub(lambda m: m.group(1) + table + m.group(2), text))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
