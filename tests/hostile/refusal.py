"""What a refusal to hostile input must look like: a 4xx (never a 500) that says why in a form a
program reads (the error contract's problem+json `code`, a FHIR OperationOutcome's code, OAuth's
`error`, or a page's X-Error-Code header), and never echoes the hostile value back raw."""

from __future__ import annotations

from typing import Any

import httpx

# Path segments and query values a client (or a scanner) sends: bad UTF-8, an overlong UTF-8
# slash, control characters, markup, a traversal, a digit that is not 0-9, and a very long value.
HOSTILE = (
    "%ff%fe",
    "%C0%AF",
    "%00",
    "a%0ab",
    "%1b%5b31m",
    "%7f",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "..%2F..%2Fetc%2Fpasswd",
    "%C2%B2",  # ², which str.isdigit() takes and int() refuses
    "9" * 5000,  # more digits than int() converts
    "x" * 5000,
)


# What must never come back raw: a page running the value's markup, or its control characters.
# (JSON escapes control characters, and a problem's `instance` naming the path is data, not markup.)
def _echoes(answer: httpx.Response) -> bool:
    text = answer.text
    if "\x00" in text or "\x1b[31m" in text:
        return True
    return "html" in answer.headers.get("content-type", "") and "<script>alert(1)" in text


def code_of(answer: httpx.Response) -> str | None:
    """The machine-readable reason of a refusal, wherever its form keeps it."""
    if answer.headers.get("x-error-code"):
        return answer.headers["x-error-code"]
    try:
        body: Any = answer.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("code"), str):
        return str(body["code"])
    if isinstance(body.get("error"), str):  # OAuth 2.0 (RFC 6749 5.2)
        return str(body["error"])
    for issue in body.get("issue") or []:
        for coding in (issue.get("details") or {}).get("coding") or []:
            if coding.get("code"):
                return str(coding["code"])
    return None


def refused(answer: httpx.Response, *statuses: int) -> str:
    """The answer's refusal code: a 4xx (one of `statuses` if given) that names its reason and does
    not echo hostile markup or control characters."""
    where = f"{answer.request.method} {answer.request.url} -> {answer.status_code}: {answer.text[:300]}"
    assert 400 <= answer.status_code < 500, where
    if statuses:
        assert answer.status_code in statuses, where
    code = code_of(answer)
    assert code, f"no machine-readable code: {where}"
    assert not _echoes(answer), where
    return code


def harmless(answer: httpx.Response) -> None:
    """A page that answers any value (a language falls back): either served or refused, never a
    500, never the hostile value echoed raw."""
    if answer.status_code >= 400:
        refused(answer)
        return
    where = f"{answer.request.method} {answer.request.url} -> {answer.status_code}"
    assert answer.status_code < 400, where
    assert not _echoes(answer), where
