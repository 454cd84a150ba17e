"""How the record's observations meet FHIR R4's vital-signs profiles (hl7.org/fhir/R4/observation-vitalsigns).

R4 says an Observation of a vital sign SHALL conform to its profile: category vital-signs, the
profile's LOINC code among its codings, a subject, an effective time, and a UCUM quantity. Each
catalogue code (domain/record/catalogue.py) maps here to the profile it meets and to its FHIR
category; codes that are not vital signs (blood glucose, arm circumference) keep their own
category, so they are not held to a profile they are not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from domain.record.catalogue import BLOOD_PRESSURE_PANEL, VITALS

CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
_PROFILE = "http://hl7.org/fhir/StructureDefinition/"

# Catalogue code → the R4 profile its Observation conforms to.
PROFILES: Final[dict[str, str]] = {
    BLOOD_PRESSURE_PANEL: _PROFILE + "bp",
    "8310-5": _PROFILE + "bodytemp",
    "29463-7": _PROFILE + "bodyweight",
    "8302-2": _PROFILE + "bodyheight",
    "59408-5": _PROFILE + "oxygensat",
    "8867-4": _PROFILE + "heartrate",
    "9279-1": _PROFILE + "resprate",
    "39156-5": _PROFILE + "bmi",
    "9843-4": _PROFILE + "headcircum",
    # A systolic or diastolic pressure alone is a vital sign without a profile of its own.
    "8480-6": _PROFILE + "vitalsigns",
    "8462-4": _PROFILE + "vitalsigns",
}

# The profile's own code, carried beside the catalogue's where they differ: R4's oxygen
# saturation profile requires 2708-6; a pulse oximeter's SpO2 (59408-5) is the more precise one.
EXTRA_CODINGS: Final[dict[str, tuple[str, str]]] = {
    "59408-5": ("2708-6", "Oxygen saturation in Arterial blood"),
}

# A code a FHIR client may send for a catalogue code (its profile's own, above).
INBOUND_ALIASES: Final[dict[str, str]] = {extra: code for code, (extra, _) in EXTRA_CODINGS.items()}

# The other units the vital-signs profiles allow (their UCUM value sets), to the catalogue's unit:
# a conformant client may send a temperature in [degF] or a weight in [lb_av]. The record keeps
# one unit per code, so such a value is stored converted.
_CONVERSIONS: Final[dict[str, dict[str, Callable[[float], float]]]] = {
    "Cel": {"[degF]": lambda f: (f - 32) * 5 / 9},
    "kg": {"g": lambda g: g / 1000, "[lb_av]": lambda lb: lb * 0.45359237},
    "cm": {"[in_i]": lambda inches: inches * 2.54},
}


def in_catalogue_unit(code: str, value: float, unit: str) -> tuple[float, str]:
    """`value unit` in the unit the catalogue records `code` in, where the profiles allow `unit`
    and it converts; otherwise as given (the record then names what it expects)."""
    vital = VITALS.get(code)
    convert = _CONVERSIONS.get(vital.unit, {}).get(unit) if vital else None
    if vital is None or convert is None:
        return value, unit
    return round(convert(value), 3), vital.unit


_CATEGORY_DISPLAY: Final = {"vital-signs": "Vital Signs", "laboratory": "Laboratory", "exam": "Exam"}
# Codes of the catalogue that are not vital signs; every other code is one.
_OTHER_CATEGORY: Final[dict[str, str]] = {
    "2339-0": "laboratory",  # glucose, mass/volume
    "15074-8": "laboratory",  # glucose, moles/volume
    "56072-2": "exam",  # mid upper arm circumference, a measurement taken at examination
}


def category(code: str) -> str:
    return _OTHER_CATEGORY.get(code, "vital-signs")


# One list per category, shared by every resource that carries it (never mutated).
_CATEGORIES: Final[dict[str, list[dict[str, Any]]]] = {
    name: [{"coding": [{"system": CATEGORY_SYSTEM, "code": name, "display": display}]}]
    for name, display in _CATEGORY_DISPLAY.items()
}


def category_concepts(code: str) -> list[dict[str, Any]]:
    return _CATEGORIES[category(code)]


def category_sql(code_sql: str) -> str:
    """The SQL of the category an observation of code `code_sql` is emitted with (for search)."""
    whens = " ".join(f"WHEN '{code}' THEN '{name}'" for code, name in _OTHER_CATEGORY.items())
    return f"(CASE {code_sql} {whens} ELSE 'vital-signs' END)"
