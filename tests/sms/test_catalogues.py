"""Every patient-facing text exists in every language: a missing translation would fall back to
English silently (and a Khmer reader would get English words around Khmer dates)."""

from __future__ import annotations

from importlib import resources

from babel.messages.pofile import read_po

from sms.texts import LANGUAGES


def _messages(language: str) -> dict[str, str]:
    with (resources.files("sms") / "locales" / f"{language}.po").open("rb") as fh:
        return {str(m.id): str(m.string) for m in read_po(fh, locale=language) if m.id}


def test_every_text_is_translated_into_every_language() -> None:
    english = _messages("en")
    for language in LANGUAGES:
        translated = _messages(language)
        missing = sorted(k for k in english if not translated.get(k))
        assert not missing, f"{language} lacks {missing}"
        assert set(translated) <= set(english), f"{language} has texts English lacks"
