"""FHIR's own answers to version preconditions and malformed requests: 412 when If-Match names
a version that is no longer current, or If-None-Exist matches several resources; 428 when an
update of the record must name the version it replaces; 400 for a header or condition that
cannot be read. They are domain errors with their own status (api.errors.http_status), so they
leave as every error does and a Bundle entry reports them the same way."""

from __future__ import annotations

from typing import ClassVar

from domain.errors import Conflict, InvalidInput


class PreconditionFailed(Conflict):
    http_status: ClassVar[int] = 412


class PreconditionRequired(InvalidInput):
    http_status: ClassVar[int] = 428


class BadRequest(InvalidInput):
    http_status: ClassVar[int] = 400


def version_of(if_match: str | None, field: str = "If-Match") -> int | None:
    """The version an If-Match names: W/"3", "3" or 3."""
    if if_match is None:
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    # A version is a positive int4: ASCII digits only (str.isdigit() also takes "²").
    if not (value.isascii() and value.isdigit() and 0 < int(value) < 2**31):
        raise BadRequest("invalid_if_match", 'If-Match is the version you read, as W/"{versionId}"', field=field)
    return int(value)
