"""Where a SMART backend client's token is good: bulk export (kick-off, status, files) and the
Groups it exports by, read only. Everywhere else (the app API, FHIR reads of single records,
writes) it is refused before any handler runs, so no route has to remember that clients exist."""

from __future__ import annotations

import re

from domain.errors import Forbidden
from domain.principal import Principal

_UUID = "[0-9a-fA-F-]{36}"
_ALLOWED = re.compile(rf"/fhir/(\$export|Patient/\$export|Group(/{_UUID}(/\$export)?)?|bulk/(status|files)/.+)")


def confine(principal: Principal, method: str, path: str) -> None:
    """Refuse a client's token outside bulk export; a user's token passes untouched."""
    if not principal.is_client:
        return
    if method in ("GET", "DELETE") and _ALLOWED.fullmatch(path):
        return
    raise Forbidden("client_not_allowed", "a backend client's token is good for bulk export ($export) only")
