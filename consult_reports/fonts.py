"""The report's fonts, found on the machine through fontconfig (`fc-list`), never bundled.

Khmer needs a font with Khmer glyphs and OpenType shaping (the PDF is laid out with HarfBuzz);
Vietnamese, French and English need a Unicode font with Vietnamese's stacked diacritics. Debian's
packages: fonts-khmeros (or fonts-noto-core) and fonts-dejavu-core. A machine without them gets
a clear error naming the package, not a PDF of empty boxes.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

# Preferred families per script, best first; any other font fontconfig says covers it will do.
_KHMER = ("Khmer OS", "Khmer OS System", "Noto Sans Khmer", "Noto Serif Khmer", "Khmer OS Battambang")
_LATIN = ("DejaVu Sans", "Noto Sans", "Liberation Sans")
_UPRIGHT = {"Regular", "Book", "Normal"}  # the plain face, whatever the font calls it
_PACKAGES = {"km": "fonts-khmeros (or fonts-noto-core)", "vi": "fonts-dejavu-core (or fonts-noto-core)"}


class FontMissing(RuntimeError):
    """No font on this machine can write the report's language."""


def _covering(lang: str) -> dict[str, Path]:
    """Family -> file of the regular TrueType/OpenType fonts fontconfig says cover `lang`."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        raise FontMissing("fontconfig's fc-list is not installed (Debian: fontconfig)")
    listed = subprocess.run(  # noqa: S603 - a fixed program and arguments
        [fc_list, "--format", "%{file}|%{family}|%{style}\n", f":lang={lang}"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    found: dict[str, Path] = {}
    for line in sorted(listed.splitlines()):
        file, _, rest = line.partition("|")
        families, _, styles = rest.partition("|")
        if not file.endswith((".ttf", ".otf")) or not _UPRIGHT.intersection(styles.split(",")):
            continue
        for family in families.split(","):
            found.setdefault(family.strip(), Path(file))
    return found


def _pick(lang: str, preferred: tuple[str, ...]) -> Path:
    found = _covering(lang)
    for family in preferred:
        if family in found:
            return found[family]
    if found:
        return found[min(found)]
    raise FontMissing(f"no font on this machine writes {lang!r}: install Debian's {_PACKAGES[lang]}")


@cache
def khmer() -> Path:
    return _pick("km", _KHMER)


@cache
def latin() -> Path:
    """A font for Vietnamese, French and English (and the codes, numbers and names in any report)."""
    return _pick("vi", _LATIN)
