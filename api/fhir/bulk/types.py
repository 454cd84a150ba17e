"""What a bulk export may hold, per level, and who may ask for which types.

Resources are built by the same functions as FHIR reads (api.fhir.admin, api.fhir.clinical),
so a line of an export file is the resource `GET /fhir/{type}/{id}` returns.

Who: a SMART backend client, for the types its token's scopes name; or a system administrator
with an app token, for demographics only (Patient, Organization): the clinical record is read
for care, with consent or by break-glass (domain.access.RECORD_BASIS), never in bulk by an
operator. Any other user is refused."""

from __future__ import annotations

from api.errors import InputRejected
from domain.errors import Forbidden
from domain.export.jobs import Level
from domain.principal import Principal
from domain.smart.scopes import readable

# Patient-compartment types: at Patient and Group level these are all an export may hold.
PATIENT_TYPES = ("Patient", "Encounter", "Observation", "Condition", "MedicationRequest")
SYSTEM_TYPES = (*PATIENT_TYPES, "Organization")
ADMIN_TYPES = ("Patient", "Organization")


def level_types(level: Level) -> tuple[str, ...]:
    return SYSTEM_TYPES if level == "system" else PATIENT_TYPES


def allowed(principal: Principal, level: Level) -> tuple[str, ...]:
    """The types this caller may export at this level; refused if none."""
    types = level_types(level)
    if principal.client_scopes is not None:
        granted = readable(principal.client_scopes, types)
        if not granted:
            raise Forbidden("scope_insufficient", "the token's scopes grant none of the types this export holds")
        return granted
    if principal.is_system_admin:
        return tuple(t for t in types if t in ADMIN_TYPES)
    raise Forbidden("role_required", "bulk export is for registered backend clients and system administrators")


def chosen(raw: str | None, level: Level, permitted: tuple[str, ...]) -> tuple[str, ...]:
    """`_type` (comma-separated) within what the level holds and the caller may read; without it,
    everything the caller may read."""
    if raw is None:
        return permitted
    wanted = [t.strip() for t in raw.split(",") if t.strip()]
    if not wanted:
        raise InputRejected("invalid_type", "_type", "lists resource types, e.g. Patient,Observation", "query")
    for name in wanted:
        if name not in level_types(level):
            raise InputRejected(
                "unsupported_type", "_type", f"this export holds {', '.join(level_types(level))}; not {name}", "query"
            )
        if name not in permitted:
            raise Forbidden("scope_insufficient", f"you may not export {name} resources", field="_type")
    return tuple(dict.fromkeys(wanted))
