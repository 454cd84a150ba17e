"""The printed prescription's words, from the gettext catalogues beside this module (km, vi, fr,
en), read once per process; a word missing from a language falls back to English."""

from __future__ import annotations

from functools import cache
from importlib import resources

from babel.messages.pofile import read_po

LANGUAGES = ("km", "vi", "fr", "en")


@cache
def _catalogue(language: str) -> dict[str, str]:
    path = resources.files("api.prescriptions") / "locales" / f"{language}.po"
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string}


def text(language: str, message_id: str, **values: object) -> str:
    language = language if language in LANGUAGES else "en"
    template = _catalogue(language).get(message_id) or _catalogue("en")[message_id]
    return template.format(**values)
