"""`spean report dhis2`: the period's figures per facility, mapped to DHIS2 data elements and org
units, printed (--dry-run) or pushed to the national HMIS, and every push written to the ledger.

Exit codes: 0 pushed and DHIS2 took every value; 1 bad input (period, mapping, facility);
2 not configured; 3 DHIS2 answered with conflicts or an ERROR status; 4 DHIS2 refused the
credentials or the user's authority; 5 DHIS2 unreachable or its answer unreadable.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from domain.errors import InvalidInput
from domain.reporting import figures, mapping, periods, pushes
from infra import db, pooling
from infra.config import Settings
from spean import dhis2

_EXIT = {"not_configured": 2, "unauthorized": 4, "forbidden": 4, "unreachable": 5, "bad_response": 5}


def _read_mapping(settings: Settings, path: Path | None) -> mapping.Mapping:
    chosen = path or (Path(settings.dhis2_mapping) if settings.dhis2_mapping else None)
    if chosen is None:
        raise InvalidInput("dhis2_mapping_missing", "set DHIS2_MAPPING to the mapping file, or pass --mapping")
    try:
        return mapping.load(chosen.read_bytes())
    except OSError as exc:
        raise InvalidInput("dhis2_mapping_missing", f"cannot read the mapping file {chosen}: {exc.strerror}") from None


def _facility_ids(values: Sequence[str] | None) -> list[uuid.UUID] | None:
    if not values:
        return None
    try:
        return [uuid.UUID(v) for v in values]
    except ValueError:
        raise InvalidInput("invalid_facility", "--facility takes facility ids (UUIDs)", field="facility") from None


async def report_dhis2(
    database_url: str,
    settings: Settings,
    *,
    period: str,
    mapping_path: Path | None = None,
    facilities: Sequence[str] | None = None,
    dry_run: bool = False,
    server_dry_run: bool = False,
    operator: str,
) -> tuple[int, str]:
    """(exit code, what to print): the payload for --dry-run, else DHIS2's import summary."""
    span = periods.parse(period)
    mapped = _read_mapping(settings, mapping_path)
    only = _facility_ids(facilities)
    if not dry_run:
        if not settings.dhis2_base_url:
            return 2, "spean: not_configured: set DHIS2_BASE_URL to the DHIS2 server (e.g. https://hmis.example.org)"
        try:
            dhis2.authorization(settings)
        except dhis2.Dhis2Failure as exc:
            return 2, f"spean: {exc.code}: {exc.detail}"
    conn = await pooling.connect(database_url, settings.db_pooler)
    try:
        await db.init_connection(conn)
        # One snapshot: every figure of the report counts the same state of the tables.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            computed = await figures.compute(conn, span)
        value_set, chosen = mapping.data_value_set(mapped, span, computed, only)
        if not value_set.data_values:
            raise InvalidInput("nothing_to_report", "no facility is mapped to an org unit: nothing to send")
        body = msgspec.json.encode(value_set)
        if dry_run:
            return 0, msgspec.json.format(body, indent=2).decode()
        push = pushes.Push(
            period=span.id,
            facility_ids=[item.facility_id for item in chosen],
            operator=operator,
            server=settings.dhis2_base_url,
            server_dry_run=server_dry_run,
            values_sent=len(value_set.data_values),
            status="",
            http_status=None,
            started_at=datetime.now(UTC),
        )
        try:
            summary = await dhis2.post_data_value_set(settings, body, dry_run=server_dry_run)
        except dhis2.Dhis2Failure as exc:
            await pushes.record(
                conn, msgspec.structs.replace(push, status=exc.code, http_status=exc.http_status, message=exc.detail)
            )
            return _EXIT[exc.code], f"spean: dhis2_{exc.code}: {exc.detail}"
        await pushes.record(
            conn,
            msgspec.structs.replace(
                push,
                status=summary.status,
                http_status=summary.http_status,
                imported=summary.imported,
                updated=summary.updated,
                ignored=summary.ignored,
                deleted=summary.deleted,
                conflicts=[msgspec.structs.asdict(c) for c in summary.conflicts],
                message=summary.description,
            ),
        )
    finally:
        await conn.close()
    return (0 if summary.ok else 3), _describe(summary, span.id, len(value_set.data_values), chosen, server_dry_run)


def _describe(
    summary: dhis2.ImportSummary, period: str, sent: int, chosen: Sequence[figures.FacilityFigures], checked: bool
) -> str:
    lines = [
        f"DHIS2 {period}{' (dryRun: nothing stored)' if checked else ''}: {summary.status}: "
        f"imported {summary.imported}, updated {summary.updated}, ignored {summary.ignored}, "
        f"deleted {summary.deleted} ({sent} values for {len(chosen)} facilities)"
    ]
    lines += [
        f"  conflict: {c.object or '-'}: {c.value}" + (f" [{c.error_code}]" if c.error_code else "")
        for c in summary.conflicts
    ]
    return "\n".join(lines)


__all__ = ["report_dhis2"]
