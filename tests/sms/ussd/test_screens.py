"""Every USSD screen and every END text, in all four languages, rendered with the longest values a
patient can meet (names and facility names at their 200-character limit, in Latin, Khmer and
Vietnamese script, the longest weekday of each language), fits one USSD page: 182 GSM-7
characters, or 80 when a character needs UCS-2. The fixed words and option numbers are never
cut: only the patient's values are shortened."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sms import texts
from sms.ussd.context import when
from sms.ussd.menu import SCREENS, TOPS, WHO
from sms.ussd.render import Line, end_text, render
from sms.ussd.screen_size import GSM7_SEPTETS, UCS2_UNITS, fits, fold_latin, is_gsm7, septets

LONG_NAME = "Sokhom Chanthavy Ratanakiri " * 8  # beyond the 200-character limit of names
LONG_FACILITY = "Centre de référence provincial de Kampong Thom, service de cardiologie " * 3
# Names are kept in any script and shown on every language's screens: a Khmer or a Vietnamese
# name (with its diacritics) turns an English or French screen into UCS-2, 80 characters a page.
SCRIPTS = {
    "latin": (LONG_NAME, LONG_FACILITY),
    "khmer": ("ចាន់ សុភាព រតនគិរី " * 12, "មន្ទីរពេទ្យបង្អែកខេត្តកំពង់ធំ ផ្នែកជំងឺបេះដូង " * 5),
    "vietnamese": ("Nguyễn Thị Phượng Trần Văn Hoàng " * 7, "Bệnh viện Đa khoa Trung ương Cần Thơ, khoa Tim mạch " * 4),
}
LONG_SPECIALTY = "gastroenterology-and-hepatology"
# A specialist's advice runs to pages; a USSD screen shows its beginning.
LONG_ADVICE = "Continue amlodipine 5 mg once daily, check blood pressure weekly at the post and refer back " * 20
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _longest_when(language: str) -> str:
    start = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)
    return max((when(start + timedelta(days=d), "Asia/Phnom_Penh", language) for d in range(7)), key=len)


def _items(screen_id: str, language: str, name: str = LONG_NAME) -> list[Line]:
    screen = SCREENS[screen_id]
    if screen.items is None:
        return []
    start = _longest_when(language)
    count = 9 if screen_id == WHO else 5
    label = {
        "patients": name,
        "matches": name,
        "needs": texts.text(language, "ussd_referral_item", specialty=LONG_SPECIALTY),
        "answers_waiting": f"{name} {LONG_SPECIALTY}",
    }.get(screen.items, f"{start} Dr {name}")
    keep = len(start) if screen.items in ("free_slots", "move_slots", "appointments", "post_consultations") else 6
    return [Line(str(n), label, dynamic=True, keep=keep) for n in range(1, count + 1)]


def _values(
    message_id: str, language: str, name: str = LONG_NAME, facility: str = LONG_FACILITY
) -> tuple[dict[str, str], dict[str, str]]:
    names = set(PLACEHOLDER.findall(_raw(message_id)))
    long_values = {
        "doctor": "Dr " + name,
        "facility": facility,
        "name": name,
        "specialty": LONG_SPECIALTY,
        "note": LONG_ADVICE,
    }
    values = {k: v for k, v in long_values.items() if k in names}
    fixed = {
        k: v
        for k, v in {
            "when": _longest_when(language),
            "count": "99",
            "state": texts.text(language, "ussd_consent_not_given"),
            "outcome": max(
                (
                    texts.text(language, f"ussd_answer_{status}", when=_longest_when(language))
                    for status in ("accepted", "answered", "declined")
                ),
                key=len,
            ),
        }.items()
        if k in names
    }
    return values, fixed


def _catalogue() -> str:
    return (Path(texts.__file__).parent / "locales" / "en.po").read_text()


def _raw(message_id: str) -> str:
    found = re.search(rf'^msgid "{message_id}"\nmsgstr "(.*)"$', _catalogue(), re.M)
    assert found is not None, message_id
    return found[1]


def _message_ids() -> list[str]:
    # Every catalogue text but the bits that go inside a screen (labels, footer, notices).
    inside = {o.label for screen in SCREENS.values() for o in screen.options} | {
        "ussd_footer",
        "ussd_referral_item",
        "ussd_consent_given",
        "ussd_consent_not_given",
        "ussd_answer_accepted",
        "ussd_answer_answered",
        "ussd_answer_declined",
    }
    return [m for m in re.findall(r'^msgid "(ussd_[a-z_]+)"', _catalogue(), re.M) if m not in inside]


# The notices each screen can show above itself: an invalid choice anywhere; PIN notices on PIN screens.
SHOWN = [
    (screen_id, notice)
    for screen_id, screen in sorted(SCREENS.items())
    for notice in (None, "ussd_invalid", *(("ussd_pin_wrong", "ussd_pin_format") if screen.answer else ()))
]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.parametrize("language", texts.LANGUAGES)
@pytest.mark.parametrize(("screen_id", "notice"), SHOWN)
def test_every_screen_fits_one_page(screen_id: str, language: str, notice: str | None, script: str) -> None:
    screen = SCREENS[screen_id]
    name, facility = SCRIPTS[script]
    values, fixed = _values(screen.title, language, name, facility)
    options = [Line(o.key, texts.text(language, o.label)) for o in screen.options]
    items = _items(screen_id, language, name)
    text, shown = render(
        language, screen.title, values, options + items, fixed=fixed, notice=notice, footer=screen_id not in TOPS
    )
    reply = "CON " + text
    assert fits(reply), f"{screen_id}/{language}: {len(reply)} characters, gsm7={is_gsm7(reply)}:\n{reply}"
    # The words and numbers of fixed options are all there, uncut; a list keeps at least one item.
    for option in options:
        label = fold_latin(option.label) if language == "vi" else option.label
        assert f"{option.key} {label}" in text
    if items:
        assert any(line.dynamic for line in shown)
        kept = [line for line in shown if line.dynamic]
        # (a cut that ends on a space drops it: one character less)
        assert all(len(line.label) >= min(line.keep, len(items[0].label)) - 1 for line in kept)
    # Dates and counts are never cut. Where a notice and the title do not both fit, the notice
    # takes the title's place (sms.ussd.render): then the screen is the notice and the options.
    notice_shown = "" if notice is None else texts.text(language, notice)
    notice_shown = fold_latin(notice_shown) if language == "vi" else notice_shown
    title_replaced = notice is not None and text.startswith(notice_shown + "\n1 ")
    for value in [] if title_replaced else fixed.values():
        assert (fold_latin(value) if language == "vi" else value) in text


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.parametrize("language", texts.LANGUAGES)
@pytest.mark.parametrize("message_id", _message_ids())
def test_every_end_text_fits_one_page(message_id: str, language: str, script: str) -> None:
    values, fixed = _values(message_id, language, *SCRIPTS[script])
    reply = "END " + end_text(language, message_id, values, fixed)
    assert fits(reply), f"{message_id}/{language}: {len(reply)} characters:\n{reply}"


@pytest.mark.parametrize("screen_id", sorted(SCREENS))
def test_english_french_and_vietnamese_screens_stay_in_gsm7(screen_id: str) -> None:
    """A single non-GSM-7 character halves a page (80 UCS-2 characters): the fixed words of the
    Latin-script languages avoid them (Vietnamese is folded to plain letters). The language menu
    is the exception, as it names each language in its own script."""
    if screen_id == "language":
        return
    screen = SCREENS[screen_id]
    for language in ("en", "fr", "vi"):
        options = [Line(o.key, texts.text(language, o.label)) for o in screen.options]
        values, fixed = _values(screen.title, language)
        plain = {k: "Dr Sok" for k in values}
        text, _ = render(language, screen.title, plain, options, fixed=fixed, footer=True)
        assert is_gsm7(text), f"{screen_id}/{language}: {text!r}"


def test_the_budgets() -> None:
    assert septets("a" * GSM7_SEPTETS) == GSM7_SEPTETS
    assert fits("a" * GSM7_SEPTETS)
    assert not fits("a" * (GSM7_SEPTETS + 1))
    assert septets("€") == 2  # an extension character takes two septets
    assert fits("ក" * UCS2_UNITS)
    assert not fits("ក" * (UCS2_UNITS + 1))
    assert fold_latin("Đặt lịch khám") == "Dat lich kham"


def test_values_stay_on_one_line() -> None:
    text, _ = render("en", "ussd_chw_patient", {"name": "Sok\nDara\t\r 2"}, footer=False)
    assert text == "Sok Dara 2"


def test_names_in_other_scripts_on_a_latin_screen() -> None:
    # A Vietnamese name loses only the letters GSM-7 lacks: the English screen keeps 182 characters.
    text, _ = render("en", "ussd_chw_patient", {"name": "Nguyễn Thị Hélène"}, footer=False)
    assert text == "Nguyen Thi Hélène"
    assert is_gsm7(text)
    # A Khmer name is shown as written (the screen becomes UCS-2 and is shortened to fit).
    text, _ = render("fr", "ussd_chw_patient", {"name": "សុខ ដារ៉ា"}, footer=False)
    assert text == "សុខ ដារ៉ា"
