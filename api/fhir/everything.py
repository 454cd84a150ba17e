"""Patient/$everything: the patient and what the caller may read about them, as one searchset.

The record's rule decides whether the operation runs at all (record.everything, as every clinical
read); each other part is read by its own domain query and rule: the patient's appointments
(scheduling's visibility), referrals (ServiceRequest: staff of the referring or receiving
facility), consents (the patient's own side only: anyone else simply finds none), the clinical
entries, notes and attachments (DocumentReference) and the Provenance of each clinical entry.

`_type` narrows to the listed types; `_since` keeps what changed at or after that instant. The
record's entries page in change order with `_count` and a `next` link; the patient and the
workflow resources (appointments, referrals, consents: at most 200 each) lead the first page.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.params import FromPath, QueryParameter

from api.deps import Caller, Config, Conn, DbPool
from api.fhir import admin
from api.fhir.bundle import fhir
from api.fhir.clinical import BY_KIND, KIND_OF, Resource, to_fhir
from api.fhir.documents import KINDS as DOCUMENT_KINDS
from api.fhir.documents import document_reference
from api.fhir.history import since_instant
from api.fhir.pages import query, searchset
from api.fhir.preconditions import BadRequest
from api.fhir.trail import provenance
from domain.booking import appointments
from domain.consent import service as consent
from domain.errors import Forbidden
from domain.record import service as record
from domain.referral import worklists

TYPES = ("Patient", "Appointment", *KIND_OF, "DocumentReference", "ServiceRequest", "Consent", "Provenance")
_WORKFLOW_LIMIT = 200


def wanted_types(raw: str | None) -> set[str]:
    """`_type`: a comma-separated list of the types $everything gathers; every type if absent."""
    if raw is None:
        return set(TYPES)
    wanted = {t.strip() for t in raw.split(",") if t.strip()}
    if not wanted or wanted - set(TYPES):
        raise BadRequest("unsupported_type", f"_type lists some of {', '.join(TYPES)}", field="_type")
    return wanted


def _since_ok(moment: datetime, since: datetime | None) -> bool:
    return since is None or moment >= since


class FhirEverythingController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    @get("/Patient/{patient_id:uuid}/$everything", summary="Everything in a patient's record (_type, _since)")
    async def everything(
        self, patient_id: FromPath[uuid.UUID], conn: Conn, principal: Caller, settings: Config, pool: DbPool,
        count: Annotated[int, QueryParameter(name="_count", ge=1, le=1000)] = 1000,
        cursor: Annotated[int | None, QueryParameter(name="_cursor")] = None,
        since: Annotated[str | None, QueryParameter(name="_since")] = None,
        type_: Annotated[str | None, QueryParameter(name="_type")] = None,
    ) -> Response[Any]:  # fmt: skip
        types, moment = wanted_types(type_), since_instant(since)
        clinical = {KIND_OF[t] for t in types if t in KIND_OF}
        kinds = [k for k in BY_KIND if k in clinical or "Provenance" in types]
        kinds += DOCUMENT_KINDS if "DocumentReference" in types else []
        # The record's filter is "after"; _since is "at or after", and instants are stored to the µs.
        after = moment - timedelta(microseconds=1) if moment else None
        patient, entries = await record.everything(
            conn, principal, patient_id, pool=pool, kinds=kinds, after_seq=cursor, limit=count, recorded_since=after
        )
        resources: list[Resource] = []
        if patient is not None:  # the first page
            if "Patient" in types and _since_ok(patient.updated_at, moment):
                resources.append(admin.patient(patient))
            resources += await self._workflow(conn, principal, patient_id, types, moment)
        for e in entries:
            if e.kind in DOCUMENT_KINDS:
                resources.append(document_reference(e))
                continue
            if BY_KIND[e.kind][0] in types:
                resources.append(to_fhir(e))
            if "Provenance" in types:
                resources.append(provenance(e))
        base, params = settings.public_base_url, {"_type": type_, "_since": since, "_count": count}
        path = f"{base}/fhir/Patient/{patient_id}/$everything"
        next_url = f"{path}{query({**params, '_cursor': entries[-1].seq})}" if len(entries) == count else None
        return fhir(searchset(base, resources, f"{path}{query(params)}", next_url))

    @staticmethod
    async def _workflow(
        conn: Conn, principal: Caller, patient_id: uuid.UUID, types: set[str], since: datetime | None
    ) -> list[Resource]:
        found: list[Resource] = []
        if "Appointment" in types:
            query_ = appointments.AppointmentQuery(patient_id=patient_id, limit=_WORKFLOW_LIMIT)
            found += [admin.appointment(a) for a in await appointments.search(conn, principal, query_)
                      if _since_ok(a.updated_at, since)]  # fmt: skip
        if "ServiceRequest" in types:
            referrals = await worklists.for_patient(
                conn, principal, patient_id, statuses=None, after=None, limit=_WORKFLOW_LIMIT
            )
            found += [admin.service_request(r) for r in referrals if _since_ok(r.updated_at, since)]
        if "Consent" in types:
            try:
                consents = await consent.list_for_patient(conn, principal, patient_id)
            except Forbidden:  # consents are the patient's side's to list; others find none here
                consents = []
            found += [admin.consent(c) for c in consents if _since_ok(c.revoked_at or c.granted_at, since)]
        return found
