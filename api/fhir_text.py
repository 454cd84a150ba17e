"""FHIR strings in answers: R4's string is [ \\r\\n\\t\\S]+, so it holds no control character but
tab, CR and LF, and no whitespace but those and the space. Text stored through the app API may
(a name pasted with a no-break space, a form feed in a note). In an encoded FHIR answer such a
control character (a JSON escape, not an escaped backslash followed by a letter) becomes U+FFFD
and such a space a plain space, so every answer is valid FHIR whatever was stored.

Nearly every answer holds neither, and each regex pass costs ~15 µs per 5 kB (a tenth of a FHIR
search's CPU in the worker): a pass runs only when a byte sequence it needs is there at all."""

from __future__ import annotations

import re

# An escape of \\b, \\f or another C0 control but \\t, \\n and \\r, after an even run of backslashes.
_CONTROL = re.compile(rb"(?<!\\)((?:\\\\)*)\\(?:b|f|u00(?:0[0-8bBcCeEfF]|1[0-9a-fA-F]))")
# Every match of _CONTROL holds one of these (so a body without them has none).
_CONTROL_NEEDS = (rb"\b", rb"\f", rb"\u00")
# UTF-8 of the whitespace R4's \S does not match: U+00A0, U+1680, U+2000-200A, U+2028, U+2029,
# U+202F, U+205F, U+3000, U+FEFF (a lead byte never ends another character's sequence). Every
# match starts with a byte above 0x7f, so an ASCII body has none.
_SPACE = re.compile(rb"\xc2\xa0|\xe1\x9a\x80|\xe2\x80[\x80-\x8a\xa8\xa9\xaf]|\xe2\x81\x9f|\xe3\x80\x80|\xef\xbb\xbf")


def fhir_strings(encoded: bytes) -> bytes:
    """`encoded` (a JSON document) with every string valid as an R4 string."""
    if any(needed in encoded for needed in _CONTROL_NEEDS):
        encoded = _CONTROL.sub(rb"\1\\ufffd", encoded)
    if not encoded.isascii():
        encoded = _SPACE.sub(b" ", encoded)
    return encoded
