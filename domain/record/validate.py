"""Turns an entry's input into what is stored: checked against the catalogue, codes normalised,
and the search code and clinical time picked out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from domain.errors import InvalidInput
from domain.record.catalogue import LOINC, PANELS, VITALS, is_sctid, is_vaccine_code, normalise_icd10
from domain.record.types import (
    AllergyIn,
    Component,
    ConditionIn,
    EncounterIn,
    EntryIn,
    ImmunizationIn,
    NoteIn,
    ObservationIn,
    PrescriptionIn,
)
from infra import instants

# Clocks on phones drift; a time much later than the server's is a wrong clock, not a future fact.
_CLOCK_SKEW = timedelta(minutes=10)


class Checked(msgspec.Struct, kw_only=True):
    code: str | None
    effective_at: datetime
    body: dict[str, Any]


def _when(value: datetime | None, now: datetime, field: str) -> datetime:
    if value is None:
        return now
    if value.tzinfo is None:
        raise InvalidInput("timezone_required", "give times with a UTC offset", field=field)
    if value > now + _CLOCK_SKEW:
        raise InvalidInput("time_in_future", "that time has not happened yet", field=field)
    return value


def _check_value(code: str, value: float | None, unit: str | None, at: str) -> None:
    """`at` is where the value sits: "" or "components[i]." (the error names value or unit)."""
    vital = VITALS[code]
    field = f"{at}value"
    if value is None or unit is None:
        raise InvalidInput("value_required", f"{vital.display} needs a value and a unit", field=field)
    if unit != vital.unit:
        raise InvalidInput(
            "unit_mismatch", f"{vital.display} is recorded in {vital.unit} (UCUM), not {unit}", field=f"{at}unit"
        )
    if not vital.low <= value <= vital.high:
        raise InvalidInput(
            "implausible_value",
            f"{vital.display} of {value} {unit} is outside {vital.low}-{vital.high}: check the reading",
            field=field,
        )


def _observation(obs: ObservationIn, now: datetime) -> Checked:
    if obs.code in PANELS:
        display, allowed = PANELS[obs.code]
        if not obs.components or obs.value is not None:
            raise InvalidInput("components_required", f"{display} carries components, not a value", field="components")
        seen: set[str] = set()
        components: list[Component] = []
        for i, c in enumerate(obs.components):
            if c.code not in allowed or c.code in seen:
                raise InvalidInput(
                    "unknown_component", f"{c.code} is not a component of {display}", field=f"components[{i}]"
                )
            seen.add(c.code)
            _check_value(c.code, c.value, c.unit, f"components[{i}].")
            components.append(Component(code=c.code, value=c.value, unit=c.unit, display=VITALS[c.code].display))
        checked = ObservationIn(code=obs.code, components=components, display=display, encounter_id=obs.encounter_id)
    elif obs.code in VITALS:
        if obs.components:
            raise InvalidInput("value_required", "only a panel carries components", field="components")
        _check_value(obs.code, obs.value, obs.unit, "")
        checked = ObservationIn(
            code=obs.code,
            value=obs.value,
            unit=obs.unit,
            display=VITALS[obs.code].display,
            encounter_id=obs.encounter_id,
        )
    else:
        known = ", ".join(sorted({*VITALS, *PANELS}))
        raise InvalidInput(
            "unknown_code", f"{obs.code} is not a LOINC code this server records ({known})", field="code"
        )
    effective = _when(obs.effective_at, now, "effective_at")
    checked.effective_at = effective
    return Checked(code=obs.code, effective_at=effective, body={**_builtins(checked), "system": LOINC})


def _builtins(entry: EntryIn) -> dict[str, Any]:
    # Instants in the stored body (started_at, ended_at, onset, effective_at) are kept as UTC text,
    # whatever offset the client wrote: they leave in answers and FHIR resources as they are.
    raw: dict[str, Any] = msgspec.to_builtins(entry, builtin_types=(datetime,))
    body = {k: instants.text(v) if isinstance(v, datetime) else v for k, v in raw.items()}
    body.pop("kind", None)
    body.pop("encounter_id", None)  # a column of its own
    return {k: v for k, v in body.items() if v is not None}


def _allergy(entry: AllergyIn, now: datetime) -> Checked:
    if entry.snomed_code is not None:
        entry.snomed_code = entry.snomed_code.strip()
        if not is_sctid(entry.snomed_code):
            raise InvalidInput(
                "invalid_snomed_code", f"{entry.snomed_code!r} is not a SNOMED CT concept id", field="snomed_code"
            )
    if entry.severity is not None and entry.reaction is None:
        raise InvalidInput("reaction_required", "a severity is the severity of a reaction: name it", field="reaction")
    onset = None if entry.onset is None else _when(entry.onset, now, "onset")
    return Checked(code=entry.snomed_code, effective_at=onset or now, body=_builtins(entry))


def _immunization(entry: ImmunizationIn, now: datetime) -> Checked:
    if entry.vaccine_code is not None:
        entry.vaccine_code = entry.vaccine_code.strip()
        if not is_vaccine_code(entry.code_system, entry.vaccine_code):
            detail = "a CVX code is 1 to 3 digits" if entry.code_system == "cvx" else "a local code is a short token"
            raise InvalidInput("invalid_vaccine_code", f"{entry.vaccine_code!r}: {detail}", field="vaccine_code")
    if entry.not_done_reason is not None and entry.status != "not-done":
        raise InvalidInput(
            "reason_without_not_done", "a reason for not vaccinating goes with status not-done", field="not_done_reason"
        )
    occurred = _when(entry.occurred_at, now, "occurred_at")
    entry.occurred_at = occurred
    return Checked(code=entry.vaccine_code, effective_at=occurred, body=_builtins(entry))


def check(entry: EntryIn, now: datetime | None = None) -> Checked:
    """Validate one entry; raise InvalidInput naming the field at fault."""
    now = now or datetime.now(UTC)
    match entry:
        case ObservationIn():
            return _observation(entry, now)
        case ConditionIn():
            code = normalise_icd10(entry.code)
            if code is None:
                raise InvalidInput(
                    "invalid_icd10", f"{entry.code!r} is not an ICD-10 code (e.g. I10, J45.9)", field="code"
                )
            entry.code = code
            onset = None if entry.onset is None else _when(entry.onset, now, "onset")
            return Checked(code=code, effective_at=onset or now, body=_builtins(entry))
        case EncounterIn():
            started = _when(entry.started_at, now, "started_at")
            if entry.ended_at is not None and _when(entry.ended_at, now, "ended_at") < started:
                raise InvalidInput("ends_before_start", "an encounter cannot end before it starts", field="ended_at")
            return Checked(code=None, effective_at=started, body=_builtins(entry))
        case PrescriptionIn():
            return Checked(code=entry.drug_code, effective_at=now, body=_builtins(entry))
        case NoteIn():
            return Checked(code=None, effective_at=now, body=_builtins(entry))
        case AllergyIn():
            return _allergy(entry, now)
        case ImmunizationIn():
            return _immunization(entry, now)
    raise AssertionError(f"unhandled entry {entry!r}")  # pragma: no cover - the union is closed
