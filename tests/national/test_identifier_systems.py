"""National identifier systems: each configured system's valid and invalid values, normalisation,
the cross-field CCCD check, and a configuration file of one's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain.errors import InvalidInput
from domain.identifiers import systems

CCCD = "https://spean.dev/fhir/sid/vn-cccd"
BHYT = "https://spean.dev/fhir/sid/vn-bhyt"
KH = "https://spean.dev/fhir/sid/kh-health-id"
NOBODY = systems.Person()


def valid(system: str, value: str, person: systems.Person = NOBODY) -> str:
    return systems.registry().validate(system, value, person, "identifiers[0].value")


def refused(system: str, value: str, person: systems.Person = NOBODY) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        valid(system, value, person)
    assert caught.value.code == "invalid_identifier"
    assert caught.value.extra["system"] == system  # the machine-readable answer names the system
    return caught.value


class TestVietnamCitizenId:
    def test_valid_numbers_are_normalised(self) -> None:
        # 001 Hà Nội, 0 = male born 19xx, 95 = 1995
        assert valid(CCCD, "001 095 012345") == "001095012345"
        assert valid(CCCD, "079-301-123456") == "079301123456"  # 079 Hồ Chí Minh, 3 = female 20xx, 2001

    @pytest.mark.parametrize(
        "value",
        ["00109501234", "0010950123456", "00109501234A", "003095012345", "099095012345", "", "---"],
    )
    def test_wrong_shape_or_province(self, value: str) -> None:
        refused(CCCD, value)

    def test_agrees_with_the_birth_year_and_sex_the_record_holds(self) -> None:
        assert valid(CCCD, "001095012345", systems.Person(birth_year=1995, sex="male"))
        assert "birth year" in refused(CCCD, "001095012345", systems.Person(birth_year=1996)).detail
        assert "sex" in refused(CCCD, "001095012345", systems.Person(birth_year=1995, sex="female")).detail
        assert valid(CCCD, "001195012345", systems.Person(birth_year=1995, sex="female"))
        assert valid(CCCD, "001095012345", systems.Person(sex="unknown"))

    def test_a_birth_year_in_the_future_is_refused(self) -> None:
        assert "future" in refused(CCCD, "001399012345").detail  # 3 = female 20xx: 2099


class TestVietnamHealthInsurance:
    @pytest.mark.parametrize(("given", "stored"), [("DN4 79 0123456789", "DN4790123456789"),
                                                   ("hc1010123456789", "HC1010123456789"),
                                                   ("0123-456-789", "0123456789")])  # fmt: skip
    def test_card_code_or_social_insurance_number(self, given: str, stored: str) -> None:
        assert valid(BHYT, given) == stored

    @pytest.mark.parametrize(
        "value", ["DN6790123456789", "D14790123456789", "DN479012345678", "012345678", "ABCDEFGHIJ"]
    )
    def test_invalid(self, value: str) -> None:
        refused(BHYT, value)


class TestCambodiaHealthId:
    def test_the_placeholder_pattern(self) -> None:
        assert valid(KH, "kh-0012 3456") == "KH00123456"
        refused(KH, "12345")
        refused(KH, "KH_001234")

    def test_it_says_it_is_unverified(self) -> None:
        assert systems.registry().by_uri[KH].verified.startswith("NOT VERIFIED")


def test_other_systems_are_kept_as_given() -> None:
    assert valid("urn:kh:hid", "  HID-001 ") == "HID-001"
    assert systems.registry().normalise("urn:kh:hid", "a-b") == "a-b"


def test_every_system_has_a_label_in_each_language() -> None:
    for system in systems.registry().by_uri.values():
        assert set(system.label) == {"km", "vi", "fr", "en"}, system.system


class TestConfiguration:
    def test_a_file_of_ones_own_replaces_the_list(self, tmp_path: Path) -> None:
        path = tmp_path / "systems.json"
        path.write_text(json.dumps({"systems": [{
            "system": "urn:la:nid", "country": "LA", "label": {"en": "Lao ID"}, "pattern": "^[0-9]{8}$", "strip": " ",
        }]}))  # fmt: skip
        registry = systems.load(path)
        assert list(registry.by_uri) == ["urn:la:nid"]
        assert registry.validate("urn:la:nid", "1234 5678", NOBODY, "f") == "12345678"
        with pytest.raises(InvalidInput):
            registry.validate("urn:la:nid", "1234", NOBODY, "f")

    @pytest.mark.parametrize(
        "content",
        [
            "not json",
            json.dumps({"systems": [{"system": "s", "country": "X", "label": {}, "pattern": "("}]}),
            json.dumps({"systems": [{"system": "s", "country": "X", "label": {}, "pattern": ".", "check": "nope"}]}),
            json.dumps({"systems": [{"system": "s"}]}),
        ],
    )
    def test_a_bad_file_is_refused_naming_the_variable(self, tmp_path: Path, content: str) -> None:
        path = tmp_path / "bad.json"
        path.write_text(content)
        with pytest.raises(ValueError, match=systems.ENV):
            systems.load(path)
