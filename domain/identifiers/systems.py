"""National identifier systems: which are known, how a value is written, and whether it is valid.

The list is data (systems.json beside this module, or the file named by SPEAN_IDENTIFIER_SYSTEMS,
which replaces it whole), so a country adds its systems without code: a system URI, a label per
language, the characters to strip and whether to upper-case (normalisation), a regular expression,
and optionally a named check whose rules are code (CHECKS) because a regex cannot say them.

Identifiers of systems not in the list are kept as given (trimmed): the record holds any
identifier, but only configured ones are validated, normalised and searched normalised.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

from domain.errors import InvalidInput

ENV = "SPEAN_IDENTIFIER_SYSTEMS"
_SHIPPED = Path(__file__).with_name("systems.json")


class System(msgspec.Struct, frozen=True, kw_only=True):
    system: str
    country: str
    label: dict[str, str]
    pattern: str
    strip: str = " -"
    upper: bool = True
    check: str | None = None
    verified: str = ""
    province_codes: list[str] = []

    def normalise(self, value: str) -> str:
        cleaned = "".join(ch for ch in value if ch not in self.strip)
        return cleaned.upper() if self.upper else cleaned


class _File(msgspec.Struct):
    systems: list[System]


class Person(msgspec.Struct, frozen=True, kw_only=True):
    """What else the record says of the person, for checks that cross fields."""

    birth_year: int | None = None
    sex: str | None = None


def _vn_cccd(system: System, value: str, person: Person) -> str | None:
    """A CCCD is 3 digits of province, 1 of century and sex, 2 of birth year, 6 random (Circular
    07/2016/TT-BCA): the province must be one of the configured codes, and where the record
    knows the birth year (or sex) the number must agree with it."""
    if system.province_codes and value[:3] not in system.province_codes:
        return "the first 3 digits are not a province code"
    century_sex = int(value[3])
    century = 1900 + 100 * (century_sex // 2)
    female = century_sex % 2 == 1
    if person.birth_year is not None and person.birth_year != century + int(value[4:6]):
        return "digits 4 to 6 do not encode the patient's birth year"
    if person.sex in ("male", "female") and female != (person.sex == "female"):
        return "digit 4 does not encode the patient's sex"
    if person.birth_year is None and century + int(value[4:6]) > date.today().year:
        return "digits 4 to 6 encode a birth year in the future"
    return None


CHECKS: dict[str, Callable[[System, str, Person], str | None]] = {"vn_cccd": _vn_cccd}


class Registry:
    def __init__(self, systems: list[System]) -> None:
        self.by_uri = {s.system: s for s in systems}
        self._patterns = {s.system: re.compile(s.pattern) for s in systems}
        for s in systems:
            if s.check is not None and s.check not in CHECKS:
                raise ValueError(f"identifier system {s.system}: unknown check {s.check!r} (known: {sorted(CHECKS)})")

    def normalise(self, system: str, value: str) -> str:
        """The stored form of a value (what search and duplicate detection compare)."""
        known = self.by_uri.get(system)
        return known.normalise(value) if known is not None else value.strip()

    def validate(self, system: str, value: str, person: Person, field: str) -> str:
        """The normalised value, or a 422 `invalid_identifier` naming the system."""
        known = self.by_uri.get(system)
        if known is None:
            return value.strip()
        normal = known.normalise(value)
        problem = None if self._patterns[system].fullmatch(normal) else "it does not have the system's format"
        if problem is None and known.check is not None:
            problem = CHECKS[known.check](known, normal, person)
        if problem is not None:
            label = known.label.get("en", system)
            raise InvalidInput("invalid_identifier", f"not a valid {label}: {problem}", field=field, system=system)
        return normal


def load(path: Path) -> Registry:
    try:
        raw: Any = msgspec.json.decode(path.read_bytes())
        return Registry(msgspec.convert(raw, _File).systems)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError, re.error, ValueError) as exc:
        raise ValueError(f"{ENV}: cannot use {path}: {exc}") from exc


@cache
def registry() -> Registry:
    """The configured systems, read once (a bad file stops the server at start-up: spean.app)."""
    return load(Path(os.environ.get(ENV) or _SHIPPED))
