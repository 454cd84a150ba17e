"""One USSD screen as text that fits: catalogue words in the patient's language, then the
patient's own values (names, dates, facilities) shortened until the whole screen fits the
gateway's budget (sms.ussd.screen_size), never the fixed words or the option numbers."""

from __future__ import annotations

from dataclasses import dataclass

from sms import texts
from sms.ussd.screen_size import fits, fold_latin, gsm7_fold

MIN_VALUE = 6  # a value is cut shorter than this only once list items past it were dropped
MIN_SQUEEZED = 3  # and never shorter than this (a Khmer name on an English screen: 80 UCS-2 characters)
MAX_VALUE = 40  # no value needs more on a phone screen
PREFIX = "CON "  # or "END ": the gateway's verb counts against the page too


@dataclass
class Line:
    key: str
    label: str
    dynamic: bool = False  # the patient's data (may be shortened or dropped) or catalogue words
    keep: int = MIN_VALUE  # never cut shorter than this (a slot's date and time stay whole)


def _clean(value: str) -> str:
    """One line: a name typed with a line break or tabs must not break the menu's layout."""
    return " ".join(value.split())


def _cut(value: str, length: int) -> str:
    return value if len(value) <= length else value[: length - 1].rstrip() + "."


def _compose(language: str, head: str, lines: list[Line], foot: str) -> str:
    body = "\n".join([head, *(f"{line.key} {line.label}" for line in lines), *([foot] if foot else [])])
    return fold_latin(body) if language == "vi" else body


def render(
    language: str,
    title: str,
    values: dict[str, str] | None = None,
    lines: list[Line] | None = None,
    *,
    fixed: dict[str, str] | None = None,
    notice: str | None = None,
    footer: bool = True,
) -> tuple[str, list[Line]]:
    """(screen text without CON/END, the lines shown). Shortens the longest value (never one of
    `fixed`: dates, counts) by one character at a time until the screen fits; a list item that
    cannot fit is dropped. A notice ("Invalid choice.") goes above the title, or, where both do
    not fit, in its place."""
    screen, shown = _fit(language, title, values, lines, fixed, notice, footer, with_title=True)
    if notice and not fits(PREFIX + screen):
        screen, shown = _fit(language, title, values, lines, fixed, notice, footer, with_title=False)
    return screen, shown


def _fit(
    language: str,
    title: str,
    given_values: dict[str, str] | None,
    lines: list[Line] | None,
    fixed: dict[str, str] | None,
    notice: str | None,
    footer: bool,
    *,
    with_title: bool,
) -> tuple[str, list[Line]]:
    # On a Latin-script screen, a value's letters outside GSM-7 (a Vietnamese name's) would halve
    # the page: they are folded to plain letters. Khmer screens are UCS-2 anyway.
    plain = gsm7_fold if language in ("en", "fr") else str
    values = {k: _cut(plain(_clean(v)), MAX_VALUE) for k, v in (given_values or {}).items()}
    shown = [
        Line(x.key, _cut(plain(_clean(x.label)), max(MAX_VALUE, x.keep)) if x.dynamic else x.label, x.dynamic, x.keep)
        for x in lines or []
    ]
    foot = texts.text(language, "ussd_footer") if footer else ""
    while True:
        parts = [texts.text(language, notice)] if notice else []
        if with_title or not notice:
            parts.append(texts.text(language, title, **values, **(fixed or {})))
        screen = _compose(language, "\n".join(parts), shown, foot)
        if fits(PREFIX + screen):
            return screen, shown
        longest_value = max(values, key=lambda k: len(values[k]), default=None)
        dynamic = [x for x in shown if x.dynamic]
        cuttable = [x for x in dynamic if len(x.label) > x.keep]
        longest_line = max(cuttable, key=lambda x: len(x.label) - x.keep, default=None)
        value_len = len(values[longest_value]) if longest_value else 0
        line_len = len(longest_line.label) if longest_line else 0
        if longest_value is not None and value_len > MIN_VALUE and value_len >= line_len:
            values[longest_value] = _cut(values[longest_value], value_len - 1)
        elif longest_line is not None:
            longest_line.label = _cut(longest_line.label, line_len - 1)
        elif len(dynamic) > 1:
            shown.remove(dynamic[-1])
        elif longest_value is not None and value_len > MIN_SQUEEZED:
            values[longest_value] = _cut(values[longest_value], value_len - 1)
        else:  # fixed words alone are too long: a catalogue bug the screen-size test reports
            return screen, shown


def end_text(
    language: str, message: str, values: dict[str, str] | None = None, fixed: dict[str, str] | None = None
) -> str:
    """An END message: catalogue words and values, shortened like a screen."""
    screen, _ = render(language, message, values, fixed=fixed, footer=False)
    return screen
