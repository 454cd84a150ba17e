"""The report's and its PIN page's texts, from the catalogues in consult_reports/locales (km, vi, fr, en);
a text missing in one language falls back to English, never to a blank."""

from __future__ import annotations

from functools import cache
from importlib import resources

from babel.messages.pofile import read_po

LANGUAGES = ("km", "vi", "fr", "en")
FALLBACK = "en"


@cache
def _catalogue(language: str) -> dict[str, str]:
    with (resources.files("consult_reports") / "locales" / f"{language}.po").open("rb") as fh:
        return {str(m.id): str(m.string) for m in read_po(fh, locale=language) if m.id and m.string}


def text(language: str, message_id: str, **values: object) -> str:
    language = language if language in LANGUAGES else FALLBACK
    template = _catalogue(language).get(message_id) or _catalogue(FALLBACK)[message_id]
    return template.format(**values)
