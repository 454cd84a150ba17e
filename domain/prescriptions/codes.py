"""Prescription codes: 15 random characters and a check character, in Crockford's base 32.

75 random bits (secrets) make a code that cannot be guessed from another one; the alphabet has
no I, L, O or U, so a code read aloud or copied by hand from paper is not misread; the check
character (Luhn mod 32) catches any single wrong character and most swapped neighbours before a
lookup. Shown as XXXX-XXXX-XXXX-XXXX; read back in any case, with or without dashes or spaces,
and with O, I and L taken as 0, 1 and 1 as Crockford's decoding says.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})
RANDOM_LENGTH = 15


def check_character(payload: str) -> str:
    """Luhn mod N over the alphabet (N = 32)."""
    n = len(ALPHABET)
    total = 0
    factor = 2
    for ch in reversed(payload):
        addend = factor * _VALUE[ch]
        total += addend // n + addend % n
        factor = 1 if factor == 2 else 2
    return ALPHABET[(n - total % n) % n]


def new_code() -> str:
    payload = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return payload + check_character(payload)


def canonical(text: str) -> str | None:
    """The stored form of a code as someone typed it, or None if it cannot be one."""
    code = text.upper().translate(_READ_AS)
    if len(code) != RANDOM_LENGTH + 1 or any(ch not in _VALUE for ch in code):
        return None
    return code if check_character(code[:-1]) == code[-1] else None


def display(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))
