"""A report link's page turns the refusals it has words for into a page, and leaves any other one
(a dependency down, a code it has no text for) to the error contract, for a browser too: it used
to look the error's type up in a table of four and failed with a 500 on any other."""

from __future__ import annotations

from typing import Any, cast

import pytest
from litestar import Request
from litestar.types import HTTPScope

from consult_reports.routes import _refuse
from domain.errors import DomainError, Forbidden, InvalidInput, NotFound, Unavailable


def _browser() -> Request[Any, Any, Any]:
    scope = {"type": "http", "method": "GET", "path": "/r/x", "headers": [(b"accept", b"text/html")]}
    return Request(cast("HTTPScope", scope))


def test_a_refusal_the_page_knows_is_shown_as_a_page() -> None:
    page = _refuse(_browser(), Forbidden("wrong_pin", "not the PIN"), "km")
    assert (page.status_code, page.headers["X-Error-Code"]) == (403, "wrong_pin")


@pytest.mark.parametrize(
    "error",
    [
        Unavailable("database_unavailable", "down a moment", retry_after_s=5),
        InvalidInput("invalid_input", "odd"),
        NotFound("attachment_missing", "no bytes"),  # a known kind with a code the page has no words for
    ],
)
def test_any_other_refusal_leaves_as_the_error_contracts_problem(error: DomainError) -> None:
    with pytest.raises(type(error)):
        _refuse(_browser(), error, "km")
