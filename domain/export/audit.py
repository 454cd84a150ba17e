"""The audit trail of an export: one event for the export (who asked, at which level, how many
resources of each type), and one per patient whose data it held, so each patient's access log
(domain.audit.access_log) lists the export like any other read of their record. Written by the
worker in the transaction that completes the job; the hash chain seals them like every event."""

from __future__ import annotations

from domain.export.jobs import Job, OutputFile
from infra.db import Connection


def actor_role(job: Job) -> str:
    return "system_client" if job.client_id is not None else "system_admin"


async def record_export(conn: Connection, job: Job, output: list[OutputFile], kinds: list[str]) -> None:
    counts: dict[str, int] = {}
    for file in output:
        counts[file.type] = counts.get(file.type, 0) + file.count
    summary = ",".join(f"{t}={n}" for t, n in counts.items()) or "none"
    await conn.execute(
        """INSERT INTO audit_events (actor_user_id, actor_role, facility_id, action, resource_type, resource_id,
                                     purpose, channel, outcome)
           VALUES ($1, $2, $3, 'export', 'BulkExport', $4, $5, 'api', 'success')""",
        job.owner,
        actor_role(job),
        job.group_id,
        str(job.id),
        f"bulk {job.level} export: {summary}",
    )
    with_patient = "Patient" in job.types
    await conn.execute(
        """INSERT INTO audit_events (actor_user_id, actor_role, facility_id, patient_id, action, resource_type,
                                     resource_id, purpose, channel, outcome)
           SELECT $1, $2, p.home_facility_id, p.id, 'export', 'BulkExport', $3, 'bulk export', 'api', 'success'
           FROM patients p
           WHERE ($4::uuid IS NULL OR p.home_facility_id = $4)
             AND (($5 AND ($6::timestamptz IS NULL OR p.updated_at >= $6))
                  OR EXISTS (SELECT 1 FROM record_entries e
                             WHERE e.patient_id = p.id AND e.kind = ANY($7::text[]) AND e.status <> 'superseded'
                               AND ($6::timestamptz IS NULL OR e.recorded_at >= $6)
                               AND e.recorded_at <= $8))""",
        job.owner,
        actor_role(job),
        str(job.id),
        job.group_id,
        with_patient,
        job.since,
        kinds,
        job.transaction_time,
    )
