"""The DHIS2 mapping file: which data element (and category option combo) each figure goes to,
and which organisation unit each facility is, read from JSON and checked whole, so an operator
learns every mistake at once rather than one per run.

{
  "dataSet": "TlhMonthly1",                      optional: the data set the values belong to
  "attributeOptionCombo": "HllvX50cXC0",         optional: for every value
  "orgUnits": {"<facility uuid>": "DiszpKrYNg8", "<facility uuid>": null},    null: never reported
  "dataElements": {
    "consultations_by_mode": {"video": {"dataElement": "...", "categoryOptionCombo": "..."}, ...},
    "consultations_by_specialty": {"cardiology": {...}, "general": {...}},
    "no_shows": {"dataElement": "..."},          categoryOptionCombo optional: DHIS2's default
    "referrals_sent": ..., "referrals_answered": ..., "referrals_completed": ...,
    "median_wait_days": ..., "median_referral_wait_days": ...
  }
}

A facility that had activity in the period but is not in `orgUnits`, a mode or specialty seen
but not mapped, a mapped facility Spean does not know, or two figures sent to the same data
element and combo, all stop the report before anything is sent: a figure silently dropped or
overwritten in the national HMIS is worse than no report.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from domain.errors import InvalidInput
from domain.reporting.figures import FacilityFigures
from domain.reporting.periods import Period

# DHIS2 identifiers: 11 characters, a letter first, then letters and digits.
_UID = re.compile(r"^[A-Za-z][A-Za-z0-9]{10}$")
COUNTS = ("no_shows", "referrals_sent", "referrals_answered", "referrals_completed")
MEDIANS = ("median_wait_days", "median_referral_wait_days")
BREAKDOWNS = ("consultations_by_mode", "consultations_by_specialty")
FIGURES = (*BREAKDOWNS, *COUNTS, *MEDIANS)


class Target(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    data_element: str
    category_option_combo: str | None = None


class _File(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    org_units: dict[str, str | None]
    # A Target, or a dict of them per mode or specialty: msgspec decodes no union of two object
    # types, so each entry is converted by name below.
    data_elements: dict[str, dict[str, Any]]
    data_set: str | None = None
    attribute_option_combo: str | None = None


class Mapping(msgspec.Struct, frozen=True, kw_only=True):
    org_units: dict[uuid.UUID, str | None]
    scalars: dict[str, Target]  # COUNTS and MEDIANS
    breakdowns: dict[str, dict[str, Target]]  # BREAKDOWNS: mode or specialty -> target
    data_set: str | None = None
    attribute_option_combo: str | None = None


class DataValue(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    data_element: str
    period: str
    org_unit: str
    value: str
    category_option_combo: str | None = None
    attribute_option_combo: str | None = None


class DataValueSet(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """The body of POST /api/dataValueSets."""

    period: str
    data_values: list[DataValue]
    data_set: str | None = None


def _invalid(problems: Iterable[str]) -> InvalidInput:
    listed = sorted(set(problems))
    return InvalidInput(
        "dhis2_mapping_invalid", "the DHIS2 mapping is wrong:\n  " + "\n  ".join(listed), problems=listed
    )


def load(text: bytes) -> Mapping:
    """Decode and check a mapping file; InvalidInput `dhis2_mapping_invalid` lists every problem."""
    try:
        raw = msgspec.json.decode(text, type=_File)
    except msgspec.DecodeError as exc:
        raise _invalid([f"not a mapping file: {exc}"]) from None
    problems: list[str] = []

    def uid(value: str | None, where: str) -> None:
        if value is not None and not _UID.match(value):
            problems.append(f"{where}: '{value}' is not a DHIS2 uid (11 letters and digits, a letter first)")

    uid(raw.data_set, "dataSet")
    uid(raw.attribute_option_combo, "attributeOptionCombo")
    org_units: dict[uuid.UUID, str | None] = {}
    for key, org_unit in raw.org_units.items():
        try:
            org_units[uuid.UUID(key)] = org_unit
        except ValueError:
            problems.append(f"orgUnits: '{key}' is not a facility id (a UUID)")
        uid(org_unit, f"orgUnits.{key}")
    scalars: dict[str, Target] = {}
    breakdowns: dict[str, dict[str, Target]] = {}
    for name in sorted(set(raw.data_elements) - set(FIGURES)):
        problems.append(f"dataElements.{name}: no such figure (figures: {', '.join(FIGURES)})")
    for name in FIGURES:
        entry = raw.data_elements.get(name)
        try:
            if entry is None:
                problems.append(f"dataElements.{name}: missing")
            elif name in BREAKDOWNS:
                breakdowns[name] = msgspec.convert(entry, dict[str, Target])
            else:
                scalars[name] = msgspec.convert(entry, Target)
        except msgspec.ValidationError as exc:
            shape = '{"video": {"dataElement": ...}, ...}' if name in BREAKDOWNS else '{"dataElement": ...}'
            problems.append(f"dataElements.{name}: {exc} (expected {shape})")
    targets = [(f"{n}", t) for n, t in scalars.items()]
    targets += [(f"{n}.{k}", t) for n, items in breakdowns.items() for k, t in items.items()]
    seen: dict[Target, str] = {}
    for where, target in targets:
        uid(target.data_element, f"dataElements.{where}.dataElement")
        uid(target.category_option_combo, f"dataElements.{where}.categoryOptionCombo")
        if target in seen:
            problems.append(f"dataElements.{where}: the same data element and combo as {seen[target]}")
        seen.setdefault(target, where)
    if problems:
        raise _invalid(problems)
    return Mapping(
        org_units=org_units,
        scalars=scalars,
        breakdowns=breakdowns,
        data_set=raw.data_set,
        attribute_option_combo=raw.attribute_option_combo,
    )


def _active(item: FacilityFigures) -> bool:
    return bool(
        item.consultations
        or item.no_shows
        or item.referrals_sent
        or item.referrals_answered
        or item.referrals_completed
    )


def _value(number: float | int) -> str:
    return str(number) if isinstance(number, int) else f"{number:g}"


def data_value_set(
    mapping: Mapping,
    period: Period,
    figures: Sequence[FacilityFigures],
    only: Sequence[uuid.UUID] | None = None,
) -> tuple[DataValueSet, list[FacilityFigures]]:
    """The values to send for `figures` (every facility Spean knows, computed for `period`), and
    the facilities they report: the mapped ones, or `only`. Counts go out as 0 when nothing
    happened, so a corrected month overwrites an earlier figure; a median with nothing to take
    it of is left out."""
    known = {item.facility_id: item for item in figures}
    problems = [f"orgUnits: no facility {f} in Spean" for f in mapping.org_units if f not in known]
    if only is None:
        chosen = [item for item in figures if mapping.org_units.get(item.facility_id)]
        unmapped = [item for item in figures if item.facility_id not in mapping.org_units and _active(item)]
        problems += [
            f"orgUnits: facility {item.facility_id} ({item.name}) has figures for {period.id} but no org unit "
            "(map it, or map it to null to leave it out)"
            for item in unmapped
        ]
    else:
        chosen = [known[f] for f in dict.fromkeys(only) if f in known and mapping.org_units.get(f)]
        problems += [f"--facility {f}: no such facility in Spean" for f in only if f not in known]
        problems += [
            f"--facility {f}: not mapped to an org unit" for f in only if f in known and not mapping.org_units.get(f)
        ]
    for item in chosen:
        for name, seen in (
            ("consultations_by_mode", item.consultations_by_mode),
            ("consultations_by_specialty", item.consultations_by_specialty),
        ):
            problems += [
                f"dataElements.{name}.{key}: not mapped, and {item.name} has {n} for {period.id}"
                for key, n in seen.items()
                if key not in mapping.breakdowns[name]
            ]
    if problems:
        raise _invalid(problems)
    values: list[DataValue] = []
    for item in chosen:
        org_unit = mapping.org_units[item.facility_id]
        assert org_unit is not None
        numbers: list[tuple[Target, float | int]] = [
            (target, item.consultations_by_mode.get(key, 0))
            for key, target in mapping.breakdowns["consultations_by_mode"].items()
        ]
        numbers += [
            (target, item.consultations_by_specialty.get(key, 0))
            for key, target in mapping.breakdowns["consultations_by_specialty"].items()
        ]
        numbers += [(mapping.scalars[name], getattr(item, name)) for name in COUNTS]
        numbers += [(mapping.scalars[name], getattr(item, name)) for name in MEDIANS if getattr(item, name) is not None]
        values += [
            DataValue(
                data_element=target.data_element,
                category_option_combo=target.category_option_combo,
                attribute_option_combo=mapping.attribute_option_combo,
                period=period.id,
                org_unit=org_unit,
                value=_value(number),
            )
            for target, number in numbers
        ]
    return DataValueSet(period=period.id, data_set=mapping.data_set, data_values=values), chosen


__all__ = ["FIGURES", "DataValue", "DataValueSet", "Mapping", "Target", "data_value_set", "load"]
