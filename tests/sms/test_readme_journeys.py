"""The README's SMS journey tables stay true: every keyword listed there means the stated action
to sms/keywords.py, in the stated language, and every keyword sms/keywords.py knows is listed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from sms import keywords

README = Path(__file__).resolve().parents[2] / "README.md"
_TABLE = re.compile(r"^#### .*\((km|vi|fr|en)\).*?\n\n((?:\|.*\n)+)", re.M)


def _tables() -> dict[str, list[tuple[list[str], str]]]:
    """language → [(the keywords of a row, its action)], from the README's SMS section."""
    section = README.read_text().split("## SMS through Twilio", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[tuple[list[str], str]]] = {}
    for language, table in _TABLE.findall(section):
        rows = [line.split("|")[1:-1] for line in table.strip().splitlines()[2:]]
        tables[language] = [(re.findall(r"`([^`]+)`", row[0]), row[1].strip().strip("`")) for row in rows]
    return tables


TABLES = _tables()


def test_a_table_per_language() -> None:
    assert sorted(TABLES) == sorted(["km", "vi", "fr", "en"])


@pytest.mark.parametrize("language", sorted(TABLES))
def test_every_listed_keyword_does_what_the_table_says(language: str) -> None:
    for words, action in TABLES[language]:
        assert words, (language, action)
        for word in words:
            command = keywords.parse(word.replace(" n", " 2"))
            assert command.action == action, (language, word)
            assert command.language in (language, None), (language, word)
            if word.endswith(" n"):
                assert command.number == 2, word


@pytest.mark.parametrize("language", sorted(TABLES))
def test_every_action_is_listed(language: str) -> None:
    listed = {action for _, action in TABLES[language]}
    assert listed == set(get_args(keywords.Action)) - {"unknown"}


def test_every_keyword_is_listed() -> None:
    listed = {keywords.fold(word.removesuffix(" n")) for rows in TABLES.values() for words, _ in rows for word in words}
    assert set(keywords.KEYWORDS) <= listed, sorted(set(keywords.KEYWORDS) - listed)
