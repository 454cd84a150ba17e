"""Files shared in a video consultation: checked as record attachments are, for the consultation's
members only, announced to the room over its WebSocket, and filed into the record by the
specialist with one action (audited, once, under the record's access rules)."""

from __future__ import annotations

import hashlib
import uuid

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Consultation, Factory, auth
from tests.realtime.client import Signal

Client = AsyncTestClient[Litestar]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n" + b"%" * 64 + b"\n%%EOF\n"


async def _share(
    client: Client, c: Consultation, token: str, data: bytes, content_type: str, name: str = "x-ray.png"
) -> tuple[int, dict[str, object]]:
    answer = await client.post(
        f"/v1/appointments/{c.appointment_id}/files",
        params={"name": name},
        content=data,
        headers=auth(token, **{"Content-Type": content_type, "Idempotency-Key": uuid.uuid4().hex}),
    )
    body: dict[str, object] = answer.json() if answer.content else {}
    return answer.status_code, body


async def test_a_shared_file_is_checked_as_a_record_attachment_is(
    sms_client: Client, sms_factory: Factory, consultation: Consultation
) -> None:
    c = consultation
    status, body = await _share(sms_client, c, c.patient.token, b"hello", "text/plain")
    assert (status, body["code"]) == (415, "unsupported_media_type")
    status, body = await _share(sms_client, c, c.patient.token, PDF, "image/png")
    assert (status, body["code"]) == (422, "content_mismatch")
    status, body = await _share(sms_client, c, c.patient.token, PNG + b"\x00" * 65536, "image/png")
    assert (status, body["code"]) == (413, "payload_too_large")
    status, body = await _share(sms_client, c, c.patient.token, PNG, "image/png", name="photo\t\u202e\n.png")
    assert status == 201, body
    assert body["name"] == "photo.png"  # control characters never reach another participant's page


async def test_only_the_consultations_members_share_and_read_its_files(
    sms_client: Client, sms_factory: Factory, sms_db: asyncpg.Pool, consultation: Consultation
) -> None:
    c = consultation
    stranger = await sms_factory.staff(c.centre, specialties=["cardiology"])
    status, body = await _share(sms_client, c, stranger.token, PNG, "image/png")
    assert (status, body["code"]) == (403, "not_a_participant")
    anonymous = await sms_client.post(
        f"/v1/appointments/{c.appointment_id}/files", content=PNG, headers={"Content-Type": "image/png"}
    )
    assert anonymous.status_code == 401
    status, shared = await _share(sms_client, c, c.chw.token, PNG, "image/png")
    assert status == 201, shared
    path = f"/v1/appointments/{c.appointment_id}/files/{shared['id']}/content"
    refused = await sms_client.get(path, headers=stranger.headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "not_a_participant")
    for member in (c.patient.headers, c.specialist.headers, c.chw.headers):
        answer = await sms_client.get(path, headers=member)
        assert answer.status_code == 200
        assert answer.content == PNG
        assert answer.headers["content-type"] == "image/png"
        assert answer.headers["cache-control"] == "private, no-store"
    listed = await sms_client.get(f"/v1/appointments/{c.appointment_id}/files", headers=c.patient.headers)
    assert [f["id"] for f in listed.json()["items"]] == [shared["id"]]
    reads = await sms_db.fetchval(
        "SELECT count(*) FROM audit_events WHERE resource_type = 'Binary' AND resource_id = $1 AND action = 'read'",
        shared["id"],
    )
    assert reads == 3


async def test_the_room_hears_of_a_shared_file_and_the_other_participant_downloads_it(
    rep_live: str, sms_client: Client, consultation: Consultation
) -> None:
    c = consultation
    patient = await Signal.open(rep_live.replace("http://", "ws://"))
    try:
        await patient.join(c.patient.token, c.appointment_id)
        status, shared = await _share(sms_client, c, c.specialist.token, PDF, "application/pdf", name="ECG.pdf")
        assert status == 201, shared
        announced = await patient.next("file")
        assert announced["file"] == {
            "id": shared["id"], "name": "ECG.pdf", "content_type": "application/pdf", "size": len(PDF),
            "by": shared["uploader_name"],
        }  # fmt: skip
        path = f"/v1/appointments/{c.appointment_id}/files/{shared['id']}/content"
        answer = await sms_client.get(path, headers=c.patient.headers)
        assert answer.content == PDF
        filed = await sms_client.post(
            f"/v1/appointments/{c.appointment_id}/files/{shared['id']}/file-into-record",
            headers=auth(c.specialist.token, **{"Idempotency-Key": uuid.uuid4().hex}),
        )
        assert filed.status_code == 200, filed.text
        assert (await patient.next("file_filed"))["entry"] == filed.json()["id"]
    finally:
        await patient.ws.close()


async def _file(client: Client, c: Consultation, file_id: object, token: str) -> tuple[int, dict[str, object]]:
    answer = await client.post(
        f"/v1/appointments/{c.appointment_id}/files/{file_id}/file-into-record",
        headers=auth(token, **{"Idempotency-Key": uuid.uuid4().hex}),
    )
    body: dict[str, object] = answer.json()
    return answer.status_code, body


async def test_the_specialist_files_a_shared_file_into_the_record_once_and_it_is_audited(
    sms_client: Client, sms_db: asyncpg.Pool, consultation: Consultation
) -> None:
    c = consultation
    _, shared = await _share(sms_client, c, c.patient.token, PNG, "image/png", name="rash.png")
    status, body = await _file(sms_client, c, shared["id"], c.patient.token)
    assert (status, body["code"]) == (403, "specialist_only")
    status, entry = await _file(sms_client, c, shared["id"], c.specialist.token)
    assert status == 200, entry
    assert entry["kind"] == "attachment"
    assert entry["patient_id"] == str(c.patient.patient_id)
    assert entry["body"] == {
        "content_type": "image/png", "size": len(PNG), "sha256": hashlib.sha256(PNG).hexdigest(), "title": "rash.png",
        "call_file_id": shared["id"],
    }  # fmt: skip
    again_status, again = await _file(sms_client, c, shared["id"], c.specialist.token)
    assert (again_status, again["id"], again["version"]) == (200, entry["id"], 1)
    entries = await sms_db.fetchval(
        "SELECT count(*) FROM record_entries WHERE patient_id = $1 AND kind = 'attachment'", c.patient.patient_id
    )
    assert entries == 1
    written = await sms_db.fetchval(
        """SELECT count(*) FROM audit_events WHERE action = 'create' AND resource_type = 'Attachment'
              AND resource_id = $1 AND actor_user_id = $2 AND patient_id = $3""",
        entry["id"], c.specialist.user_id, c.patient.patient_id,
    )  # fmt: skip
    assert written == 1
    # The record's own route serves the filed bytes (with the record's read rules).
    content = await sms_client.get(f"/v1/record/{entry['id']}/content", headers=c.patient.headers)
    assert content.content == PNG
