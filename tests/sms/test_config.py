"""SMS settings: the Twilio sender needs its credentials (start-up stops naming the missing one),
and the country list must be two-letter regions."""

from __future__ import annotations

import pytest

from infra.config import ConfigError, load_settings

_TWILIO = {
    "SPEAN_SMS_SENDER": "twilio",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "token",
    "TWILIO_FROM_NUMBER": "+85523900900",
}


@pytest.mark.parametrize("missing", ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"])
def test_a_missing_credential_stops_start_up_naming_it(missing: str) -> None:
    with pytest.raises(ConfigError, match=missing):
        load_settings({k: v for k, v in _TWILIO.items() if k != missing})


def test_a_sender_number_or_messaging_service_is_required() -> None:
    environ = {k: v for k, v in _TWILIO.items() if k != "TWILIO_FROM_NUMBER"}
    with pytest.raises(ConfigError, match="TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"):
        load_settings(environ)
    assert load_settings({**environ, "TWILIO_MESSAGING_SERVICE_SID": "MG" + "0" * 32}).sms_sender == "twilio"


@pytest.mark.parametrize("value", ["K", "KH,Vietnam", ",", "12"])
def test_countries_are_two_letter_regions(value: str) -> None:
    with pytest.raises(ConfigError, match="SPEAN_SMS_COUNTRIES"):
        load_settings({"SPEAN_SMS_COUNTRIES": value})


def test_hourly_budget_is_positive() -> None:
    with pytest.raises(ConfigError, match="SPEAN_SMS_HOURLY_BUDGET"):
        load_settings({"SPEAN_SMS_HOURLY_BUDGET": "0"})
