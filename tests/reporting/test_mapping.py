"""The mapping file: every problem listed at once, and what is sent for a facility."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from domain.errors import InvalidInput
from domain.reporting import mapping
from domain.reporting.figures import FacilityFigures
from domain.reporting.periods import parse

CENTRE, POST = uuid.uuid4(), uuid.uuid4()


def example(org_units: dict[uuid.UUID, str | None]) -> dict[str, Any]:
    def de(n: int, combo: str | None = None) -> dict[str, str]:
        return {"dataElement": f"TlhDataEl{n:02d}", **({"categoryOptionCombo": combo} if combo else {})}

    return {
        "dataSet": "TlhMonthly1",
        "orgUnits": {str(k): v for k, v in org_units.items()},
        "dataElements": {
            "consultations_by_mode": {
                "video": de(1, "ModeVideo01"),
                "audio": de(1, "ModeAudio01"),
                "async": de(1, "ModeAsync01"),
            },
            "consultations_by_specialty": {"cardiology": de(2, "SpecCardio1"), "general": de(2, "SpecGenera1")},
            "no_shows": de(3),
            "referrals_sent": de(4),
            "referrals_answered": de(5),
            "referrals_completed": de(6),
            "median_wait_days": de(7),
            "median_referral_wait_days": de(8),
        },
    }


def load(data: dict[str, Any]) -> mapping.Mapping:
    return mapping.load(json.dumps(data).encode())


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidInput) as refused:
        load(data)
    assert refused.value.code == "dhis2_mapping_invalid"
    listed: list[str] = refused.value.extra["problems"]
    return listed


def test_every_problem_of_a_file_is_listed_together() -> None:
    data = example({CENTRE: "OuCentre001"})
    data["orgUnits"]["not-a-uuid"] = "OuPost00001"
    data["orgUnits"][str(POST)] = "short"
    del data["dataElements"]["no_shows"]
    data["dataElements"]["referrals_sent"] = {"dataElement": "TlhDataEl05"}  # the same as answered
    data["dataElements"]["no_show"] = {"dataElement": "TlhDataEl03"}
    data["dataElements"]["median_wait_days"] = {"video": {"dataElement": "TlhDataEl07"}}
    listed = problems(data)
    assert any("'not-a-uuid' is not a facility id" in p for p in listed)
    assert any("'short' is not a DHIS2 uid" in p for p in listed)
    assert "dataElements.no_shows: missing" in listed
    assert any(p.startswith("dataElements.no_show: no such figure") for p in listed)
    assert any("the same data element and combo" in p for p in listed)
    assert any(p.startswith("dataElements.median_wait_days:") for p in listed)
    assert len(listed) == 6


def test_a_file_that_is_not_json_is_refused_clearly() -> None:
    with pytest.raises(InvalidInput) as refused:
        mapping.load(b"orgUnits: {}")
    assert "not a mapping file" in refused.value.detail


def figures(facility: uuid.UUID, **fields: Any) -> FacilityFigures:
    return FacilityFigures(
        facility_id=facility, name=f"Facility {facility.hex[:4]}", timezone="Asia/Phnom_Penh", **fields
    )


def test_values_for_each_mapped_facility_zeros_included_medians_only_when_known() -> None:
    mapped = load(example({CENTRE: "OuCentre001", POST: None}))
    centre = figures(CENTRE, consultations_by_mode={"video": 2}, consultations_by_specialty={"cardiology": 2},
                     no_shows=1, median_wait_days=4.5)  # fmt: skip
    post = figures(POST, referrals_sent=3)  # mapped to null: deliberately not reported
    value_set, chosen = mapping.data_value_set(mapped, parse("202611"), [centre, post])
    assert chosen == [centre]
    body = msgspec.json.decode(msgspec.json.encode(value_set))
    assert body["period"] == "202611"
    assert body["dataSet"] == "TlhMonthly1"
    values = {(v["dataElement"], v.get("categoryOptionCombo")): v["value"] for v in body["dataValues"]}
    assert values == {
        ("TlhDataEl01", "ModeVideo01"): "2",
        ("TlhDataEl01", "ModeAudio01"): "0",
        ("TlhDataEl01", "ModeAsync01"): "0",
        ("TlhDataEl02", "SpecCardio1"): "2",
        ("TlhDataEl02", "SpecGenera1"): "0",
        ("TlhDataEl03", None): "1",
        ("TlhDataEl04", None): "0",
        ("TlhDataEl05", None): "0",
        ("TlhDataEl06", None): "0",
        ("TlhDataEl07", None): "4.5",
    }
    assert {v["orgUnit"] for v in body["dataValues"]} == {"OuCentre001"}
    assert all(v["period"] == "202611" and "attributeOptionCombo" not in v for v in body["dataValues"])


def test_figures_the_mapping_cannot_carry_stop_the_report() -> None:
    stranger = uuid.uuid4()
    mapped = load(example({CENTRE: "OuCentre001", stranger: "OuStrange01"}))
    centre = figures(CENTRE, consultations_by_mode={"video": 1}, consultations_by_specialty={"dermatology": 1})
    post = figures(POST, referrals_sent=1)  # active, not mapped
    idle = figures(uuid.uuid4())  # nothing happened: no need to map it
    with pytest.raises(InvalidInput) as refused:
        mapping.data_value_set(mapped, parse("202611"), [centre, post, idle])
    listed = refused.value.extra["problems"]
    assert any(f"orgUnits: no facility {stranger} in Spean" == p for p in listed)
    assert any(str(POST) in p and "no org unit" in p for p in listed)
    assert any(p.startswith("dataElements.consultations_by_specialty.dermatology: not mapped") for p in listed)
    assert len(listed) == 3


def test_facilities_asked_for_must_be_mapped() -> None:
    mapped = load(example({CENTRE: "OuCentre001", POST: None}))
    centre, post = figures(CENTRE), figures(POST, referrals_sent=2)
    value_set, chosen = mapping.data_value_set(mapped, parse("202611"), [centre, post], only=[CENTRE])
    assert chosen == [centre]
    assert value_set.data_values
    with pytest.raises(InvalidInput) as refused:
        mapping.data_value_set(mapped, parse("202611"), [centre, post], only=[POST, uuid.UUID(int=1)])
    assert len(refused.value.extra["problems"]) == 2


def test_the_example_shipped_in_docs_is_a_valid_mapping() -> None:
    example_file = Path(__file__).resolve().parents[2] / "docs" / "dhis2-mapping.example.json"
    mapped = mapping.load(example_file.read_bytes())
    assert mapped.data_set == "TlhMonthly1"
    assert set(mapped.breakdowns["consultations_by_mode"]) == {"video", "audio", "async"}
    assert list(mapped.org_units.values()).count(None) == 1
