"""Electronic prescriptions over the app API: read one by its code (a pharmacist checking a paper
prescription), print it, and record the prescriber's licence and the facility's national code
that every new prescription carries (domain.prescriptions)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, JSONBody, QueryParameter

from api.deps import Caller, Config, Conn, DbPool
from api.prescriptions.page import Paper, render, verification_url
from domain.prescriptions import service as prescriptions


class Identified(msgspec.Struct, kw_only=True):
    system: str
    value: str


class PrescriptionView(msgspec.Struct, kw_only=True):
    """A prescription as its code shows it: what to dispense, for whom, by whom, from where."""

    code: str
    display_code: str
    verification_url: str
    entry_id: uuid.UUID
    version: int
    status: str  # current | entered_in_error: never dispense the latter
    patient_id: uuid.UUID
    patient_name: str
    patient_birth: str | None
    prescriber_name: str | None
    prescriber_licence: Identified | None
    facility_id: uuid.UUID | None
    facility_name: str | None
    facility_code: Identified | None
    written_at: datetime
    prescription: dict[str, Any]  # drug, dose, route, frequency, duration_days, drug_code, instructions


def _identified(body: dict[str, Any], key: str) -> Identified | None:
    return msgspec.convert(body[key], Identified) if key in body else None


def _view(rx: prescriptions.Verified, base: str) -> PrescriptionView:
    body = rx.entry.body
    return PrescriptionView(
        code=rx.code, display_code=rx.display_code, verification_url=verification_url(base, rx.display_code),
        entry_id=rx.entry.id, version=rx.entry.version, status=rx.entry.status, patient_id=rx.entry.patient_id,
        patient_name=rx.patient_name, patient_birth=rx.patient_birth, prescriber_name=rx.prescriber_name,
        prescriber_licence=_identified(body, "prescriber_licence"),
        facility_id=rx.entry.provenance.facility_id, facility_name=rx.facility_name,
        facility_code=_identified(body, "facility_code"),
        written_at=rx.entry.provenance.recorded_at,
        prescription={k: v for k, v in body.items() if k not in prescriptions.STAMPED},
    )  # fmt: skip


class PrescriptionController(Controller):
    path = "/v1/prescriptions"
    tags = ["prescriptions"]

    @get("/{code:str}", summary="Check a prescription by its code (its facility staff, or whom the record is open to)")
    async def verify(
        self, code: FromPath[str], conn: Conn, pool: DbPool, principal: Caller, settings: Config
    ) -> PrescriptionView:
        return _view(await prescriptions.verify(conn, pool, principal, code), settings.public_base_url)

    @get("/{code:str}/print", summary="The prescription as a printable page with its QR code (patient's language)")
    async def print_page(
        self,
        code: FromPath[str],
        conn: Conn,
        pool: DbPool,
        principal: Caller,
        settings: Config,
        paper: Annotated[Paper, QueryParameter(description="A5 (default) or A4")] = "A5",
    ) -> Response[str]:
        rx = await prescriptions.verify(conn, pool, principal, code)
        return Response(
            render(rx, base_url=settings.public_base_url, paper=paper),
            media_type="text/html; charset=utf-8",
            headers={"cache-control": "no-store"},
        )


@put("/v1/practitioners/{practitioner_id:uuid}/licence", tags=["practitioners"],
     summary="Record a practitioner's licence (an admin of one of their facilities)")  # fmt: skip
async def set_licence(
    practitioner_id: FromPath[uuid.UUID], data: JSONBody[prescriptions.LicenceIn], conn: Conn, principal: Caller
) -> prescriptions.LicenceIn:
    return await prescriptions.set_licence(conn, principal, practitioner_id, data)


@put("/v1/facilities/{facility_id:uuid}/national-code", tags=["facilities"],
     summary="Record a facility's code in the national register (its admin)")  # fmt: skip
async def set_facility_code(
    facility_id: FromPath[uuid.UUID], data: JSONBody[prescriptions.FacilityCodeIn], conn: Conn, principal: Caller
) -> prescriptions.FacilityCodeIn:
    return await prescriptions.set_facility_code(conn, principal, facility_id, data)


PRESCRIPTION_HANDLERS: list[type[Controller] | HTTPRouteHandler] = [
    PrescriptionController,
    set_licence,
    set_facility_code,
]
