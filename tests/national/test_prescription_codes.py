"""Prescription codes: shape, check character, tolerant reading, and no repeats."""

from __future__ import annotations

import re

from domain.prescriptions import codes

SHAPE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{16}$")  # the migration's CHECK


def test_shape_and_check_character() -> None:
    made = [codes.new_code() for _ in range(2000)]
    assert len(set(made)) == len(made)
    for code in made:
        assert SHAPE.fullmatch(code)
        assert codes.canonical(code) == code


def test_read_back_as_people_type_it() -> None:
    code = codes.new_code()
    shown = codes.display(code)
    assert re.fullmatch(r"(\w{4}-){3}\w{4}", shown)
    assert codes.canonical(shown.lower()) == code
    assert codes.canonical(shown.replace("-", " ")) == code
    zeroed = "0" * 15 + codes.check_character("0" * 15)
    assert codes.canonical("O" * 15 + zeroed[-1]) == zeroed  # O read as 0 (Crockford)


def test_every_single_typo_and_neighbour_swap_is_caught() -> None:
    code = codes.new_code()
    for i in range(len(code)):
        for ch in codes.ALPHABET:
            if ch != code[i]:
                assert codes.canonical(code[:i] + ch + code[i + 1 :]) is None
    for i in range(len(code) - 1):
        swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
        # Luhn mod 32 misses one neighbour swap only: 0 and Z (values 0 and 31).
        if swapped != code and {code[i], code[i + 1]} != {"0", "Z"}:
            assert codes.canonical(swapped) is None


def test_not_codes() -> None:
    for text in ("", "RX", "0" * 16 + "0", "I" * 3, "ABCD-EFGH-JKMN-PQRU"):
        assert codes.canonical(text) is None
