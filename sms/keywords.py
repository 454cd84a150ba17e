"""What an inbound SMS asks for, as data: each language's keywords, matched after folding case
and Latin diacritics (ARRÊT = ARRET = arret; HỦY = HUY), with Khmer matched as written and any
script's digits read as numbers (CANCEL ៣ = CANCEL 3).

A keyword also tells the language the patient wrote in, used to answer a number Spean does not
know in its own language.
"""

from __future__ import annotations

import unicodedata
from typing import Literal, NamedTuple

Action = Literal[
    "help",
    "stop",
    "start",
    "my",
    "cancel",
    "move",
    "yes",
    "no",
    "book",
    "consent",
    "withdraw",
    "register",
    "number",
    "unknown",
]

KEYWORDS: dict[str, tuple[Action, str | None]] = {
    # English (and the words every carrier uses)
    "HELP": ("help", "en"),
    "INFO": ("help", None),
    "STOP": ("stop", None),
    "UNSUBSCRIBE": ("stop", "en"),
    "START": ("start", None),
    "UNSTOP": ("start", "en"),
    "MY": ("my", None),
    "LIST": ("my", "en"),
    "CANCEL": ("cancel", None),
    "MOVE": ("move", None),
    "YES": ("yes", None),
    "Y": ("yes", None),
    "OK": ("yes", None),
    "NO": ("no", None),
    "N": ("no", None),
    # French
    "AIDE": ("help", "fr"),
    "ARRET": ("stop", "fr"),
    "ARRETER": ("stop", "fr"),
    "REPRENDRE": ("start", "fr"),
    "DEMARRER": ("start", "fr"),
    "MES": ("my", "fr"),
    "RDV": ("my", "fr"),
    "ANNULER": ("cancel", "fr"),
    "DEPLACER": ("move", "fr"),
    "REPORTER": ("move", "fr"),
    "OUI": ("yes", "fr"),
    "NON": ("no", "fr"),
    # Vietnamese
    "GIUP": ("help", "vi"),
    "TRO GIUP": ("help", "vi"),
    "DUNG": ("stop", "vi"),
    "BAT DAU": ("start", "vi"),
    "LICH": ("my", "vi"),
    "LICH HEN": ("my", "vi"),
    "HUY": ("cancel", "vi"),
    "DOI": ("move", "vi"),
    "DOI LICH": ("move", "vi"),
    "CO": ("yes", "vi"),
    "KHONG": ("no", "vi"),
    # Khmer
    "ជំនួយ": ("help", "km"),
    "ឈប់": ("stop", "km"),
    "ចាប់ផ្តើម": ("start", "km"),
    "ចាប់ផ្ដើម": ("start", "km"),
    "ណាត់": ("my", "km"),
    "ណាត់ជួប": ("my", "km"),
    "បោះបង់": ("cancel", "km"),
    "លុប": ("cancel", "km"),
    "ផ្លាស់": ("move", "km"),
    "ផ្លាស់ប្តូរ": ("move", "km"),
    "ផ្លាស់ប្ដូរ": ("move", "km"),
    "បាទ": ("yes", "km"),
    "ចាស": ("yes", "km"),
    "ទេ": ("no", "km"),
    # Booking, consent and registration (each language's words, then English)
    "BOOK": ("book", "en"),
    "CONSENT": ("consent", "en"),
    "AGREE": ("consent", "en"),
    "WITHDRAW": ("withdraw", "en"),
    "REGISTER": ("register", "en"),
    "JOIN": ("register", "en"),
    "RESERVER": ("book", "fr"),
    "PRENDRE RDV": ("book", "fr"),
    "ACCORD": ("consent", "fr"),
    "CONSENTIR": ("consent", "fr"),
    "RETIRER": ("withdraw", "fr"),
    "INSCRIRE": ("register", "fr"),
    "INSCRIPTION": ("register", "fr"),
    "DAT LICH": ("book", "vi"),
    "DAT HEN": ("book", "vi"),
    "DONG Y": ("consent", "vi"),
    "RUT": ("withdraw", "vi"),
    "HUY DONG Y": ("withdraw", "vi"),
    "DANG KY": ("register", "vi"),
    "កក់": ("book", "km"),
    "កក់ណាត់": ("book", "km"),
    "យល់ព្រម": ("consent", "km"),
    "ដកចេញ": ("withdraw", "km"),
    "ដកការយល់ព្រម": ("withdraw", "km"),
    "ចុះឈ្មោះ": ("register", "km"),
}


class Command(NamedTuple):
    action: Action
    number: int | None
    language: str | None


def fold(text: str) -> str:
    """Upper case, Latin diacritics dropped (Khmer signs kept: they are letters there), spaces squeezed."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFD", text.strip()):
        if unicodedata.combining(ch) and out and out[-1].isascii():
            continue
        out.append(ch)
    folded = unicodedata.normalize("NFC", "".join(out)).replace("đ", "d").replace("Đ", "D")
    return " ".join(folded.upper().split())


def parse(body: str) -> Command:
    text = fold(body)
    if text.isdecimal():  # "2", "២": the answer to a numbered list
        return Command("number", int(text), None)
    words = text.split(" ")
    number: int | None = None
    if len(words) > 1 and words[-1].isdecimal():  # "CANCEL 2", "HUY ២"
        number = int(words[-1])
        words = words[:-1]
    elif words and words[-1][-1:].isdecimal() and not words[-1].isdecimal():  # "CANCEL2"
        stem = words[-1].rstrip("0123456789០១២៣៤៥៦៧៨៩")
        if stem:
            number, words = int(words[-1][len(stem) :]), [*words[:-1], stem]
    phrase = " ".join(words)
    found = KEYWORDS.get(phrase) or KEYWORDS.get(words[0] if words else "")
    if found is None:
        return Command("unknown", None, None)
    action, language = found
    if action in ("cancel", "move") and number is None:
        return Command("my", None, language)  # which one? show the numbered list
    return Command(action, number, language)
