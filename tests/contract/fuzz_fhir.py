"""A schemathesis check (loaded through SCHEMATHESIS_HOOKS by tests/contract/test_fuzz.py) that
keeps every FHIR body the live server answers, one JSON document a line, in the file named by
SPEAN_FUZZ_FHIR_BODIES: the test then hands them to the suite's independent R4 validator
(tests/fhir_conformance.py), as it does for every FHIR response of the app under test."""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis


@schemathesis.check
def fhir_bodies(ctx: Any, response: Any, case: Any) -> bool | None:
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    if not str(content_type).lower().startswith("application/fhir+json") or not response.content:
        return None
    record = {"origin": f"{case.method} {case.formatted_path}", "body": response.content.decode("utf-8", "replace")}
    with open(os.environ["SPEAN_FUZZ_FHIR_BODIES"], "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
    return None
