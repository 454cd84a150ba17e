"""CPU seconds used so far by a server and by the PostgreSQL backends serving its database: what
each answer costs is the difference over a load divided by the answers (steadier than rates on a
shared machine: other work slows the answers, not the CPU each one takes)."""

from __future__ import annotations

import psutil


def _used(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def server_and_postgres(server_pid: int, database: str) -> tuple[float, float]:
    """(the server process and its children, the local PostgreSQL backends whose process title
    names `database`: background processes serving every database are left out)."""
    server = psutil.Process(server_pid)
    app = _used(server) + sum(_used(child) for child in server.children(recursive=True))
    postgres = 0.0
    for process in psutil.process_iter(["name", "cmdline"]):
        title = " ".join(process.info["cmdline"] or ())
        if (process.info["name"] or "").startswith("postgres") and f" {database} " in f" {title} ":
            postgres += _used(process)
    return app, postgres
