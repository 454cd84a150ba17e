"""Attachments through HTTP: stored by content hash, type checked against the bytes, size
limited, read back under the record's consent rules."""

from __future__ import annotations

import hashlib

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from domain.errors import InvalidInput
from domain.record import attachments
from infra.config import Settings
from spean.app import create_app
from tests.factory import Factory

Client = AsyncTestClient[Litestar]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def test_upload_and_download_by_content_hash(client: Client, factory: Factory) -> None:
    scene = await factory.scene()
    path = f"/v1/patients/{scene.patient}/attachments"
    headers = {**scene.chw.headers, "Content-Type": "image/png"}
    response = await client.post(path, content=PNG, params={"title": "wound, day 3"}, headers=headers)
    assert response.status_code == 201, response.text
    entry = response.json()
    assert entry["kind"] == "attachment"
    assert entry["body"] == {
        "content_type": "image/png",
        "size": len(PNG),
        "sha256": hashlib.sha256(PNG).hexdigest(),
        "title": "wound, day 3",
    }
    again = await client.post(path, content=PNG, headers=headers)  # same bytes: one blob, a second entry
    assert again.json()["body"]["sha256"] == entry["body"]["sha256"]
    download = await client.get(f"/v1/record/{entry['id']}/content", headers=scene.chw.headers)
    assert download.status_code == 200
    assert download.content == PNG
    assert download.headers["content-type"] == "image/png"
    assert download.headers["cache-control"] == "private, no-store"
    pdf = await client.post(path, content=PDF, headers={**scene.chw.headers, "Content-Type": "application/pdf"})
    assert pdf.status_code == 201, pdf.text
    stranger = await factory.staff(await factory.facility())
    refused = await client.get(f"/v1/record/{entry['id']}/content", headers=stranger.headers)
    assert refused.json()["code"] == "consent_required"


async def test_types_and_sizes_are_checked(client: Client, factory: Factory) -> None:
    scene = await factory.scene()
    path = f"/v1/patients/{scene.patient}/attachments"
    cases = [
        (PDF, "image/png", 422, "content_mismatch"),
        (b"", "image/png", 422, "empty_attachment"),
        # a type this route does not take is a 415, as on every other route (it was a 422)
        (b"MZ\x90\x00", "application/x-msdownload", 415, "unsupported_media_type"),
        (b'{"title": "x"}', "application/json", 415, "unsupported_media_type"),
        (PNG, "text/plain", 415, "unsupported_media_type"),
        (PNG, "multipart/form-data; boundary=x", 415, "unsupported_media_type"),
        (PNG, "", 415, "unsupported_media_type"),
    ]
    for data, content_type, status, code in cases:
        response = await client.post(path, content=data, headers={**scene.chw.headers, "Content-Type": content_type})
        assert response.status_code == status, (code, response.text)
        assert response.json()["code"] == code
    huge = await client.post(
        path, content=PNG + b"\0" * 1_048_576, headers={**scene.chw.headers, "Content-Type": "image/png"}
    )
    assert huge.status_code == 413  # the API's body limit answers before the attachment limit


def test_the_configured_limit_applies() -> None:
    with pytest.raises(InvalidInput) as refused:
        attachments.check(PNG, "image/png", max_bytes=100)
    assert refused.value.code == "attachment_too_large"
    attachments.check(PNG, "image/png", max_bytes=len(PNG))


async def test_a_file_over_the_configured_limit_is_a_413(settings: Settings, factory: Factory) -> None:
    # Over SPEAN_ATTACHMENT_MAX_BYTES is what over the API's body limit is: 413, not a 422.
    scene = await factory.scene()
    small = create_app(msgspec.structs.replace(settings, attachment_max_bytes=len(PNG)))
    async with AsyncTestClient(small) as client:
        path = f"/v1/patients/{scene.patient}/attachments"
        headers = {**scene.chw.headers, "Content-Type": "image/png"}
        refused = await client.post(path, content=PNG + b"\0", headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (413, "payload_too_large"), refused.text
        assert (await client.post(path, content=PNG, headers=headers)).status_code == 201
