"""How much fits on one USSD screen.

A gateway carries 160 octets per screen: 182 characters of the GSM 03.38 7-bit alphabet (an
extension character such as `€` or `[` takes two), or 80 UCS-2 characters as soon as one
character falls outside it. Khmer is always UCS-2; Vietnamese is folded to plain Latin letters
for USSD (as feature-phone users commonly write it), so it keeps the 182-character budget.
"""

from __future__ import annotations

import unicodedata

GSM7_SEPTETS = 182
UCS2_UNITS = 80

_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_EXTENSION = "^{}\\[~]|€\f"
_GSM7 = frozenset(_BASIC)
_GSM7_EXT = frozenset(_EXTENSION)


def septets(text: str) -> int | None:
    """The GSM-7 length of `text`, or None when it needs UCS-2."""
    total = 0
    for char in text:
        if char in _GSM7:
            total += 1
        elif char in _GSM7_EXT:
            total += 2
        else:
            return None
    return total


def is_gsm7(text: str) -> bool:
    return septets(text) is not None


def fits(text: str) -> bool:
    """Does `text` fit on one screen in the encoding it needs?"""
    length = septets(text)
    if length is not None:
        return length <= GSM7_SEPTETS
    return len(text.encode("utf-16-le")) // 2 <= UCS2_UNITS


def fold_latin(text: str) -> str:
    """Vietnamese (or any Latin text) without its diacritics: `Đặt lịch` → `Dat lich`."""
    text = text.replace("đ", "d").replace("Đ", "D")
    stripped = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", stripped)


def gsm7_fold(text: str) -> str:
    """`text` with each letter outside GSM-7 folded to its plain Latin letter (`Nguyễn` → `Nguyen`,
    `Benoît` → `Benoit`) when that makes the whole text GSM-7, so that a Vietnamese name does not
    halve an English or French screen. GSM-7 letters (`é`, `è`, `à`) stay; a text that needs UCS-2
    anyway (a Khmer name) is left exactly as written."""
    if is_gsm7(text):
        return text
    folded = "".join(c if c in _GSM7 or c in _GSM7_EXT else fold_latin(c) for c in text)
    return folded if is_gsm7(folded) else text
