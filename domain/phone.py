"""Phone numbers are stored in E.164; input in national or international form is accepted."""

from __future__ import annotations

import phonenumbers

from domain.errors import InvalidInput


def normalize(raw: str, default_region: str, *, field: str = "phone") -> str:
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidInput("invalid_phone", f"'{raw}' is not a phone number", field=field) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput("invalid_phone", f"'{raw}' is not a valid phone number", field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
