"""Inbound keywords in km/vi/fr/en, with and without diacritics, any script's digits."""

from __future__ import annotations

import pytest

from sms.keywords import Command, parse


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", Command("stop", None, None)),
        ("stop please", Command("stop", None, None)),
        ("Arrêt", Command("stop", None, "fr")),
        ("ARRET", Command("stop", None, "fr")),
        ("dừng", Command("stop", None, "vi")),
        ("DUNG", Command("stop", None, "vi")),
        ("ឈប់", Command("stop", None, "km")),
        ("start", Command("start", None, None)),
        ("Bắt đầu", Command("start", None, "vi")),
        ("bat dau", Command("start", None, "vi")),
        ("ចាប់ផ្តើម", Command("start", None, "km")),
        ("Démarrer", Command("start", None, "fr")),
        ("help", Command("help", None, "en")),
        ("Aide", Command("help", None, "fr")),
        ("giúp", Command("help", None, "vi")),
        ("ជំនួយ", Command("help", None, "km")),
        ("my", Command("my", None, None)),
        ("Lịch hẹn", Command("my", None, "vi")),
        ("rdv", Command("my", None, "fr")),
        ("ណាត់", Command("my", None, "km")),
        ("CANCEL 2", Command("cancel", 2, None)),
        ("cancel2", Command("cancel", 2, None)),
        ("Annuler 3", Command("cancel", 3, "fr")),
        ("hủy 1", Command("cancel", 1, "vi")),
        ("HUY ២", Command("cancel", 2, "vi")),
        ("បោះបង់ ៣", Command("cancel", 3, "km")),
        ("cancel", Command("my", None, None)),  # which one? the numbered list
        ("MOVE 1", Command("move", 1, None)),
        ("Déplacer 2", Command("move", 2, "fr")),
        ("dời 1", Command("move", 1, "vi")),
        ("ផ្លាស់ ១", Command("move", 1, "km")),
        ("move", Command("my", None, None)),
        ("yes", Command("yes", None, None)),
        ("Oui", Command("yes", None, "fr")),
        ("có", Command("yes", None, "vi")),
        ("បាទ", Command("yes", None, "km")),
        ("no", Command("no", None, None)),
        ("không", Command("no", None, "vi")),
        ("ទេ", Command("no", None, "km")),
        ("book", Command("book", None, "en")),
        ("Réserver", Command("book", None, "fr")),
        ("prendre rdv", Command("book", None, "fr")),
        ("Đặt lịch", Command("book", None, "vi")),
        ("dat hen", Command("book", None, "vi")),
        ("កក់", Command("book", None, "km")),
        ("consent", Command("consent", None, "en")),
        ("accord", Command("consent", None, "fr")),
        ("Đồng ý", Command("consent", None, "vi")),
        ("យល់ព្រម", Command("consent", None, "km")),
        ("withdraw", Command("withdraw", None, "en")),
        ("Retirer", Command("withdraw", None, "fr")),
        ("rút", Command("withdraw", None, "vi")),
        ("hủy đồng ý", Command("withdraw", None, "vi")),  # not HỦY (cancel) n
        ("ដកចេញ", Command("withdraw", None, "km")),
        ("register", Command("register", None, "en")),
        ("Inscrire", Command("register", None, "fr")),
        ("Đăng ký", Command("register", None, "vi")),
        ("ចុះឈ្មោះ", Command("register", None, "km")),
        ("2", Command("number", 2, None)),
        (" ៣ ", Command("number", 3, None)),  # Khmer digits
        ("1985", Command("number", 1985, None)),
        ("bonjour", Command("unknown", None, None)),
        ("", Command("unknown", None, None)),
        ("សួស្តី", Command("unknown", None, None)),
    ],
)
def test_parse(body: str, expected: Command) -> None:
    assert parse(body) == expected
