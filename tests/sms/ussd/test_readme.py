"""The README's USSD journeys, one table per language, are what the phone shows: every screen the
tables name is rendered here from the menu tree and the catalogues, and its first line and option
labels compared with the table's; every screen of the menu tree appears in every table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sms import texts
from sms.ussd.menu import SCREENS
from sms.ussd.screen_size import fold_latin

README = Path(__file__).parents[3] / "README.md"
PLACEHOLDERS = ("when", "doctor", "facility", "name", "specialty", "outcome", "note", "count", "state")
LIST = "1 …"  # a numbered list loaded for the caller (times, appointments, patients)
_ROW = re.compile(r"^\| `(\w+)` \| (.*?) \| (.*) \|$")


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## USSD (feature phones)")
    return text[start : text.index("\n## ", start + 1)]


def _tables() -> dict[str, list[tuple[str, str]]]:
    """language → [(screen or message id, what the table says is seen)]"""
    tables: dict[str, list[tuple[str, str]]] = {}
    language = None
    for line in _section().splitlines():
        if heading := re.match(r"^#### .*\(`(km|vi|fr|en)`", line):
            language = heading[1]
            tables[language] = []
        elif language and (row := _ROW.match(line)):
            tables[language].append((row[1], row[3]))
    return tables


def _shown(language: str, message_id: str) -> str:
    """A catalogue text's first line as the phone shows it, placeholders as «name»."""
    words = texts.text(language, message_id, **{p: f"«{p}»" for p in PLACEHOLDERS}).splitlines()[0]
    return fold_latin(words) if language == "vi" else words


def _expected(language: str, screen_or_message: str) -> str:
    screen = SCREENS.get(screen_or_message)
    if screen is None:  # a last word
        return f"END **{_shown(language, screen_or_message)}**"
    cells = [f"**{_shown(language, screen.title)}**"]
    for option in screen.options:
        label = texts.text(language, option.label)
        cells.append(f"{option.key} {fold_latin(label) if language == 'vi' else label}")
    if screen.items is not None:
        cells.append(LIST)
    return " · ".join(cells)


def test_a_table_per_language_covering_every_screen() -> None:
    tables = _tables()
    assert sorted(tables) == sorted(texts.LANGUAGES)
    steps = {language: [step for step, _ in rows] for language, rows in tables.items()}
    assert all(order == steps["en"] for order in steps.values()), "the four tables walk the same steps"
    assert set(SCREENS) <= set(steps["en"]), f"not in the README: {set(SCREENS) - set(steps['en'])}"


@pytest.mark.parametrize("language", texts.LANGUAGES)
def test_the_tables_show_what_the_phone_shows(language: str) -> None:
    for step, seen in _tables()[language]:
        assert seen == _expected(language, step), f"README, USSD, {language}, `{step}`"
