"""Notes and attachments of the record as FHIR: DocumentReference (read, vread, _history, search by
patient) and Binary (an attachment's bytes). Read-only here: notes and attachments are written
through the app API. Every read is the record's read (record.get/history/search,
attachments.content): the same rule, consent and audit as the app API.

A note's text travels inline (content.attachment.data, UTF-8); an attachment's bytes are a
Binary resource the DocumentReference points to (`Binary/{entry id}`), base64 in FHIR JSON as
every FHIR answer here is (the raw file is the app API's /v1/record/{id}/content).
"""

from __future__ import annotations

import base64
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, QueryParameter

from api.deps import Caller, Config, Conn, DbPool
from api.fhir.bundle import fhir
from api.fhir.clinical import Resource, instant, ref
from api.fhir.pages import history_bundle, query, searchset
from domain.errors import InvalidInput, NotFound
from domain.record import attachments
from domain.record import service as record
from domain.record.types import Entry
from infra.storage import BlobStore

KINDS = ["note", "attachment"]
_LOINC = "http://loinc.org"
# A note's category as a LOINC document type.
_NOTE_TYPE = {
    "progress": ("11506-3", "Progress note"),
    "advice": ("11488-4", "Consult note"),
    "plan": ("18776-5", "Plan of care note"),
    "history": ("11329-0", "History general Narrative"),
    "other": ("34109-9", "Note"),
}
_STATUS = {"current": "current", "superseded": "superseded", "entered_in_error": "entered-in-error"}


def document_reference(entry: Entry) -> Resource:
    body = entry.body
    if entry.kind == "note":
        code, display = _NOTE_TYPE.get(body.get("category", "other"), _NOTE_TYPE["other"])
        attachment: dict[str, Any] = {
            "contentType": "text/plain; charset=utf-8",
            "data": base64.b64encode(body["text"].encode()).decode(),
        }
    else:
        code, display = "55107-7", "Addendum Document"
        attachment = {"contentType": body["content_type"], "url": f"Binary/{entry.id}", "size": body["size"]}
        if "title" in body:
            attachment["title"] = body["title"]
    resource: Resource = {
        "resourceType": "DocumentReference",
        "id": str(entry.id),
        "meta": {"versionId": str(entry.version), "lastUpdated": instant(entry.provenance.recorded_at)},
        "status": _STATUS[entry.status],
        "docStatus": "amended" if entry.version > 1 else "final",
        "type": {"coding": [{"system": _LOINC, "code": code, "display": display}]},
        "subject": ref("Patient", entry.patient_id),
        "date": instant(entry.provenance.recorded_at),
        "author": [{"identifier": {"system": "urn:spean:user", "value": str(entry.provenance.author_user_id)}}],
        "content": [{"attachment": attachment}],
    }
    if entry.provenance.facility_id is not None:
        resource["custodian"] = ref("Organization", entry.provenance.facility_id)
    if entry.encounter_id is not None:
        resource["context"] = {"encounter": [ref("Encounter", entry.encounter_id)]}
    return resource


def _document(entry: Entry) -> Entry:
    if entry.kind not in KINDS:
        raise NotFound("entry_not_found", "no such DocumentReference")
    return entry


def _blobs(request: Request[Any, Any, Any]) -> BlobStore:
    store: BlobStore = request.app.state.blobs
    return store


class FhirDocumentController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    @get("/DocumentReference/{entry_id:uuid}", summary="A note or attachment of the record")
    async def read(self, entry_id: FromPath[uuid.UUID], conn: Conn, principal: Caller, pool: DbPool) -> Response[Any]:
        return fhir(document_reference(_document(await record.get(conn, principal, entry_id, pool=pool))))

    @get("/DocumentReference/{entry_id:uuid}/_history", summary="Every version of a note or attachment")
    async def history(
        self, entry_id: FromPath[uuid.UUID], conn: Conn, principal: Caller, pool: DbPool, settings: Config
    ) -> Response[Any]:
        versions = [_document(v) for v in await record.history(conn, principal, entry_id, pool=pool)]
        base = settings.public_base_url
        resources = [document_reference(v) for v in reversed(versions)]
        return fhir(history_bundle(base, resources, f"{base}/fhir/DocumentReference/{entry_id}/_history", None))

    @get("/DocumentReference/{entry_id:uuid}/_history/{version_id:str}", summary="One version (vread)")
    async def vread(
        self, entry_id: FromPath[uuid.UUID], version_id: FromPath[str], conn: Conn, principal: Caller, pool: DbPool
    ) -> Response[Any]:
        for v in await record.history(conn, principal, entry_id, pool=pool):
            if str(_document(v).version) == version_id:
                return fhir(document_reference(v))
        raise NotFound("version_not_found", f"DocumentReference/{entry_id} has no version {version_id}")

    @get("/DocumentReference", summary="A patient's notes and attachments (patient, _count)")
    async def search(
        self, conn: Conn, principal: Caller, settings: Config, pool: DbPool, patient: Annotated[str, QueryParameter()],
        count: Annotated[int, QueryParameter(name="_count", ge=1, le=1000)] = 100,
        cursor: Annotated[int | None, QueryParameter(name="_cursor")] = None,
    ) -> Response[Any]:  # fmt: skip
        try:
            patient_id = uuid.UUID(patient.removeprefix("Patient/"))
        except ValueError:
            raise InvalidInput("invalid_reference", "patient is Patient/{id} or an id", field="patient") from None
        entries = await record.search(conn, principal, patient_id, pool=pool, kinds=KINDS, after_seq=cursor,
                                      limit=count)  # fmt: skip
        base, params = settings.public_base_url, {"patient": patient, "_count": count}
        path = f"{base}/fhir/DocumentReference"
        next_url = f"{path}{query({**params, '_cursor': entries[-1].seq})}" if len(entries) == count else None
        found = searchset(base, [document_reference(e) for e in entries], f"{path}{query(params)}", next_url)
        return fhir(found)

    @get("/Binary/{entry_id:uuid}", summary="An attachment's bytes, as a Binary resource")
    async def binary(
        self, entry_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], conn: Conn, principal: Caller,
        pool: DbPool,
    ) -> Response[Any]:  # fmt: skip
        entry, data = await attachments.content(conn, pool, principal, _blobs(request), entry_id)
        response = fhir({
            "resourceType": "Binary", "id": str(entry.id),
            "meta": {"versionId": str(entry.version), "lastUpdated": instant(entry.provenance.recorded_at)},
            "contentType": entry.body["content_type"], "data": base64.b64encode(data).decode(),
        })  # fmt: skip
        # Health data: never in a shared cache.
        response.headers["Cache-Control"] = "private, no-store"
        return response
