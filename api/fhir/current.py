"""_history of the types that keep no past versions (Practitioner, Organization, Location,
Schedule, Appointment, ServiceRequest, Consent): the history Bundle holds the current version
only, with its real meta.versionId. Earlier versions are not stored, so none are made up; the
audit trail and the appointment/referral event logs are where their past lives. (Patients keep
their versions: their _history is in api.fhir.history.)"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath

from api.deps import Caller, Config, Conn
from api.fhir import admin
from api.fhir.bundle import CURRENT_HISTORY, bundle, fhir
from api.fhir.clinical import Resource
from api.fhir.scheduling import location, schedule
from domain import facilities, patients, practitioners
from domain.booking import appointments
from domain.consent import service as consent
from domain.principal import Principal
from domain.referral import service as referrals
from infra.db import Connection

Reader = Callable[[Connection, Principal, uuid.UUID], Awaitable[Resource]]


async def _patient(conn: Connection, principal: Principal, ident: uuid.UUID) -> Resource:
    return admin.patient(await patients.get(conn, principal, ident))


async def _practitioner(conn: Connection, principal: Principal, ident: uuid.UUID) -> Resource:
    return admin.practitioner(await practitioners.get(conn, ident))


async def _organization(conn: Connection, principal: Principal, ident: uuid.UUID) -> Resource:
    return admin.organization(await facilities.get(conn, ident))


async def _location(conn: Connection, principal: Principal, ident: uuid.UUID) -> Resource:
    return location(await facilities.get(conn, ident))


async def _schedule(conn: Connection, principal: Principal, ident: uuid.UUID) -> Resource:
    return schedule(await practitioners.get(conn, ident))


async def _appointment(conn: Connection, principal: Principal, ident: uuid.UUID) -> Resource:
    return admin.appointment(await appointments.get(conn, principal, ident))


async def _service_request(conn: Connection, principal: Principal, ident: uuid.UUID) -> Resource:
    return admin.service_request(await referrals.get(conn, principal, ident))


async def _consent(conn: Connection, principal: Principal, ident: uuid.UUID) -> Resource:
    return admin.consent(await consent.get(conn, principal, ident))


CURRENT_ONLY = tuple(name for name in CURRENT_HISTORY if name != "Patient")
# The same reads (rules and audit) as the types' read interactions.
READERS: dict[str, Reader] = {
    "Patient": _patient,
    "Practitioner": _practitioner,
    "Organization": _organization,
    "Location": _location,
    "Schedule": _schedule,
    "Appointment": _appointment,
    "ServiceRequest": _service_request,
    "Consent": _consent,
}


class FhirCurrentHistoryController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    # One path per type: the router does not fall back from /Patient/{id}... to /{type}/{id}/_history.
    @get([f"/{name}/{{ident:uuid}}/_history" for name in CURRENT_ONLY], summary="The current version, as history")
    async def current_history(
        self, request: Request[Any, Any, Any], ident: FromPath[uuid.UUID], conn: Conn, principal: Caller,
        settings: Config,
    ) -> Response[Any]:  # fmt: skip
        resource_type = request.url.path.removeprefix("/fhir/").split("/", 1)[0]
        resource = await READERS[resource_type](conn, principal, ident)
        self_path = f"/fhir/{resource_type}/{ident}/_history"
        return fhir(bundle(settings.public_base_url, "history", [resource], self_path=self_path))
