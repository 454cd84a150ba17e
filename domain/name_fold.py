"""The search form of a name: how a typed query and a stored name are made comparable.

NFKC and case-folding make the same letters typed on different keyboards equal; Latin letters
also lose their diacritics (`Phượng` → `phuong`, `Hélène` → `helene`), because a health worker
on a feature phone types Vietnamese and French names without them. Khmer is left as written:
its vowel signs are combining marks that carry meaning, not accents.

The Latin table is explicit (letter → base letter) so the migration that refolded stored names
(migrations/0017) can apply the very same table in SQL with translate().
"""

from __future__ import annotations

import unicodedata

__all__ = ["LATIN_FOLD", "fold"]

# Latin-1 Supplement, Latin Extended-A/B and Latin Extended Additional (Vietnamese lives there).
_LATIN_RANGES = ((0x00C0, 0x024F), (0x1E00, 0x1EFF))


def _latin_table() -> dict[str, str]:
    table = {"đ": "d", "Đ": "D"}  # a letter of its own in Unicode, with no decomposition
    for first, last in _LATIN_RANGES:
        for code in range(first, last + 1):
            char = chr(code)
            parts = unicodedata.normalize("NFD", char)
            base, marks = parts[0], parts[1:]
            if len(parts) > 1 and base.isascii() and base.isalpha() and all(unicodedata.combining(m) for m in marks):
                table[char] = base
    return table


LATIN_FOLD: dict[str, str] = _latin_table()
_TRANSLATION = str.maketrans(LATIN_FOLD)


def fold(text: str) -> str:
    """The search form of `text`: NFKC, case-folded, Latin diacritics removed, Khmer as written."""
    return unicodedata.normalize("NFKC", text).casefold().translate(_TRANSLATION)
