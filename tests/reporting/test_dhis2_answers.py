"""DHIS2's answers as different server versions give them, and the DHIS2 settings."""

from __future__ import annotations

import json

import pytest

from infra.config import ConfigError, load_settings
from spean.dhis2 import Dhis2Failure, authorization, read_answer


def test_a_bare_import_summary_from_servers_before_2_38() -> None:
    body = {"responseType": "ImportSummary", "status": "SUCCESS", "description": "Import process completed",
            "importCount": {"imported": 3, "updated": 1, "ignored": 0, "deleted": 0}}  # fmt: skip
    summary = read_answer(200, json.dumps(body).encode())
    assert (summary.status, summary.imported, summary.updated) == ("SUCCESS", 3, 1)
    assert summary.ok


def test_a_web_message_with_conflicts_is_not_ok() -> None:
    conflict = {"object": "TlhConsult1", "value": "Data element not found or not accessible", "errorCode": "E7610"}
    body = {"httpStatus": "Conflict", "httpStatusCode": 409, "status": "WARNING",
            "response": {"responseType": "ImportSummary", "status": "WARNING",
                         "importCount": {"imported": 1, "ignored": 1}, "conflicts": [conflict]}}  # fmt: skip
    summary = read_answer(409, json.dumps(body).encode())
    assert not summary.ok
    assert summary.conflicts[0].error_code == "E7610"
    assert (summary.imported, summary.ignored, summary.deleted) == (1, 1, 0)


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, b'{"httpStatus":"Unauthorized","httpStatusCode":401,"status":"ERROR","message":"Unauthorized"}',
         "unauthorized"),
        (403, b'{"httpStatus":"Forbidden","status":"ERROR","message":"User has no data write access"}', "forbidden"),
        (502, b"<html>Bad gateway</html>", "bad_response"),
        (200, b'{"responseType":"ImportSummaries","status":"SUCCESS"}', "bad_response"),
    ],
)  # fmt: skip
def test_answers_without_an_import_summary_are_failures(status: int, body: bytes, code: str) -> None:
    with pytest.raises(Dhis2Failure) as failed:
        read_answer(status, body)
    assert failed.value.code == code


def test_a_token_wins_over_basic_auth_and_half_a_login_is_refused() -> None:
    both = load_settings({"DHIS2_TOKEN": "d2pat_x", "DHIS2_USERNAME": "u", "DHIS2_PASSWORD": "p"})
    assert authorization(both) == "ApiToken d2pat_x"
    assert authorization(load_settings({"DHIS2_USERNAME": "u", "DHIS2_PASSWORD": "p"})) == "Basic dTpw"
    with pytest.raises(ConfigError, match="DHIS2_USERNAME and DHIS2_PASSWORD"):
        load_settings({"DHIS2_USERNAME": "u"})
    with pytest.raises(ConfigError, match="DHIS2_BASE_URL"):
        load_settings({"DHIS2_BASE_URL": "hmis.example.org"})
    with pytest.raises(Dhis2Failure):
        authorization(load_settings({}))
