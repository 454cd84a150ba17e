"""How many SMS segments a text takes, and in which encoding (3GPP TS 23.038 / 23.040).

GSM-7 carries 160 septets in one segment, 153 per segment once concatenated (the header takes
7); a character of the extension table ({ } [ ] ~ \\ | ^ € and form feed) costs two septets, and
its escape pair never straddles two segments. Anything outside the GSM-7 alphabet makes the
whole message UCS-2: 70 UTF-16 units in one segment, 67 per segment concatenated, and a
character outside the BMP (a surrogate pair) is never split either. Khmer and Vietnamese
(with its precomposed vowels) are UCS-2.

No maintained PyPI package counts segments (gsm0338 is a codec only), so this is small and tested.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Encoding = Literal["GSM-7", "UCS-2"]

_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
).replace("\x1b", "")
_EXTENSION = "\f^{}\\[~]|€"
_SINGLE = {"GSM-7": 160, "UCS-2": 70}
_MULTI = {"GSM-7": 153, "UCS-2": 67}


class Segments(NamedTuple):
    encoding: Encoding
    parts: int
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)


def _costs(text: str) -> tuple[Encoding, list[int]]:
    if all(ch in _BASIC or ch in _EXTENSION for ch in text):
        return "GSM-7", [2 if ch in _EXTENSION else 1 for ch in text]
    return "UCS-2", [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def count(text: str) -> Segments:
    encoding, costs = _costs(text)
    units = sum(costs)
    if units <= _SINGLE[encoding]:
        return Segments(encoding, 1, units)
    per, segments, used = _MULTI[encoding], 1, 0
    for cost in costs:  # a two-unit character that does not fit moves whole to the next segment
        if used + cost > per:
            segments, used = segments + 1, 0
        used += cost
    return Segments(encoding, segments, units)


def split(text: str) -> list[str]:
    """The parts a handset receives (for tests: where the segment boundaries fall)."""
    encoding, costs = _costs(text)
    if sum(costs) <= _SINGLE[encoding]:
        return [text]
    parts, start, used = [], 0, 0
    for i, cost in enumerate(costs):
        if used + cost > _MULTI[encoding]:
            parts.append(text[start:i])
            start, used = i, 0
        used += cost
    parts.append(text[start:])
    return parts
