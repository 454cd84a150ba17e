"""Codes the record accepts: a small catalogue of vital signs (LOINC code, UCUM unit, plausible
range) and the ICD-10 code format.

Ranges are plausibility limits, not clinical norms: they catch a slipped digit on a cheap phone
(a temperature of 375) while letting any real, even critical, value through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stdnum import verhoeff

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"

# Category A-Z except U (reserved), two digits (or digit + A/B for a few chapters), optional
# subdivision after a dot: A09, J45.9, S72.001.
ICD10_CODE = re.compile(r"^[A-TV-Z][0-9][0-9AB](\.[0-9A-TV-Z]{1,4})?$")


@dataclass(frozen=True)
class Vital:
    code: str
    display: str
    unit: str  # UCUM code, which is also what is shown
    low: float
    high: float


VITALS: dict[str, Vital] = {
    v.code: v
    for v in (
        Vital("8480-6", "Systolic blood pressure", "mm[Hg]", 40, 300),
        Vital("8462-4", "Diastolic blood pressure", "mm[Hg]", 20, 200),
        Vital("8310-5", "Body temperature", "Cel", 25, 45),
        Vital("29463-7", "Body weight", "kg", 0.2, 400),
        Vital("8302-2", "Body height", "cm", 20, 260),
        Vital("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 40, 100),
        Vital("8867-4", "Heart rate", "/min", 20, 300),
        Vital("9279-1", "Respiratory rate", "/min", 4, 100),
        Vital("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 5, 100),
        Vital("9843-4", "Head Occipital-frontal circumference", "cm", 15, 80),
        Vital("56072-2", "Mid upper arm circumference", "cm", 5, 60),
        Vital("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 10, 1500),
        Vital("15074-8", "Glucose [Moles/volume] in Blood", "mmol/L", 0.5, 85),
    )
}

# A panel carries no value of its own, only components (FHIR vital-signs profile).
BLOOD_PRESSURE_PANEL = "85354-9"
PANELS: dict[str, tuple[str, frozenset[str]]] = {
    BLOOD_PRESSURE_PANEL: ("Blood pressure panel with all children optional", frozenset({"8480-6", "8462-4"})),
}


def normalise_icd10(code: str) -> str | None:
    """The code upper-cased, or None when it is not an ICD-10 code."""
    code = code.strip().upper()
    return code if ICD10_CODE.match(code) else None


# --- allergies and immunizations ------------------------------------------------------------------

SNOMED = "http://snomed.info/sct"
CVX = "http://hl7.org/fhir/sid/cvx"
# The country's own vaccine codes (an EPI programme's list), when CVX has no code for a product.
LOCAL_VACCINE = "https://spean.dev/fhir/CodeSystem/vaccine"
VACCINE_SYSTEMS = {"cvx": CVX, "local": LOCAL_VACCINE}
NO_KNOWN_ALLERGY = "716186003"  # SNOMED CT: No known allergy (what the IPS records for "none")

_SCTID = re.compile(r"^[1-9][0-9]{5,17}$")
_CVX_CODE = re.compile(r"^[0-9]{1,3}$")
_LOCAL_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")


def is_sctid(code: str) -> bool:
    """A well-formed SNOMED CT identifier: 6 to 18 digits whose Verhoeff check digit holds, so
    a slipped digit is caught before it names another concept."""
    return bool(_SCTID.match(code)) and verhoeff.is_valid(code)


def is_vaccine_code(system: str, code: str) -> bool:
    """CVX codes are 1 to 3 digits; a local code is a short token."""
    return bool((_CVX_CODE if system == "cvx" else _LOCAL_CODE).match(code))
