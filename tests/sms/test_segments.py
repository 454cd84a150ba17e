"""Segment counting (GSM-7 160/153 with two-septet extension characters, UCS-2 70/67 with
surrogate pairs kept whole) and every SMS template within its budget in all four languages."""

from __future__ import annotations

import re

import pytest

from sms import segments, texts


class TestCount:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("a" * 160, ("GSM-7", 1, 160)),
            ("a" * 161, ("GSM-7", 2, 161)),
            ("a" * 306, ("GSM-7", 2, 306)),
            ("a" * 307, ("GSM-7", 3, 307)),
            ("€" * 80, ("GSM-7", 1, 160)),  # extension characters cost two septets
            ("€" * 81, ("GSM-7", 2, 162)),
            ("é à ñ ü", ("GSM-7", 1, 7)),  # in the GSM-7 basic table
            ("ê", ("UCS-2", 1, 1)),  # not in it: the whole message becomes UCS-2
            ("ក" * 70, ("UCS-2", 1, 70)),
            ("ក" * 71, ("UCS-2", 2, 71)),
            ("Tiếng Việt", ("UCS-2", 1, 10)),
            ("😀" * 35, ("UCS-2", 1, 70)),  # a surrogate pair is two UTF-16 units
            ("😀" * 36, ("UCS-2", 2, 72)),
        ],
    )
    def test_count(self, text: str, expected: tuple[str, int, int]) -> None:
        assert tuple(segments.count(text)) == expected

    def test_an_escape_pair_never_straddles_two_segments(self) -> None:
        text = "a" * 152 + "€" + "a" * 10  # the euro would start at septet 153 of 153
        parts = segments.split(text)
        assert parts[0] == "a" * 152
        assert parts[1].startswith("€")
        assert segments.count(text).parts == len(parts) == 2

    def test_a_surrogate_pair_is_never_split(self) -> None:
        text = "ក" * 66 + "😀" + "ក" * 10
        parts = segments.split(text)
        assert parts[0] == "ក" * 66
        assert parts[1].startswith("😀")


_SAMPLES = texts.SAMPLE_VALUES


@pytest.mark.parametrize("language", texts.LANGUAGES)
class TestTemplates:
    def test_every_sms_template_has_a_budget(self, language: str) -> None:
        sms_ids = [m for m in texts.message_ids(language) if not m.startswith("ussd_")]
        assert sorted(sms_ids) == sorted(texts.BUDGETS)

    @pytest.mark.parametrize("template", sorted(texts.BUDGETS))
    def test_within_budget(self, language: str, template: str) -> None:
        rendered = texts.text(language, template, **texts.sample(template))
        assert segments.count(rendered).parts <= texts.BUDGETS[template], rendered

    def test_the_sign_in_code_is_never_cut_in_half(self, language: str) -> None:
        rendered = texts.text(language, "login_code", **_SAMPLES)
        code = str(_SAMPLES["code"])
        assert any(code in part for part in segments.split(rendered))  # whole, in one segment


_UNBREAKABLE = re.compile(r"https?://\S+|\b\d{6}\b")  # a link, a sign-in code


@pytest.mark.parametrize("language", texts.LANGUAGES)
@pytest.mark.parametrize("template", sorted(texts.BUDGETS))
def test_no_code_or_link_is_cut_between_segments(language: str, template: str) -> None:
    rendered = texts.text(language, template, **texts.sample(template))
    parts = segments.split(rendered)
    for whole in _UNBREAKABLE.findall(rendered):
        assert any(whole in part for part in parts), (template, whole)
