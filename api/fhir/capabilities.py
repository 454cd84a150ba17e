"""What versions and writes add to the CapabilityStatement: one table of interactions per type,
applied to the statement api.fhir.bundle builds for reads and searches, so that what it declares
is what the routes of history, write_routes, validate and transaction serve."""

from __future__ import annotations

import copy
from typing import Any

from api.fhir import vitals
from api.fhir.clinical import KIND_OF, WRITTEN, Resource
from api.fhir.current import CURRENT_ONLY

# The IPS IG's operation (api/fhir/summary_routes.py): Patient/[id]/$summary, Patient/$summary?identifier=
_SUMMARY = {"name": "summary", "definition": "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"}
_VALIDATE = {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}
_MATCH = {"name": "match", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match"}  # api.fhir.match
_WRITABLE = ("create", "update", "vread", "history-instance", "history-type")
# type -> (interactions added, what its versioning and writes are)
INTERACTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "Patient": (_WRITABLE, {"versioning": "versioned", "readHistory": True, "updateCreate": False,
                            "conditionalCreate": True, "conditionalUpdate": False}),
    **{
        name: (_WRITABLE, {"versioning": "versioned-update", "readHistory": True, "updateCreate": False,
                           "conditionalCreate": True, "conditionalUpdate": False})
        for name in WRITTEN
    },
    # Record types written through the app API only: versioned and read back, not written here.
    **{
        name: (("vread", "history-instance", "history-type"), {"versioning": "versioned", "readHistory": True})
        for name in KIND_OF if name not in WRITTEN
    },
    # Only the current version is kept: vread serves it, and an earlier vid is 404.
    **{name: (("vread",), {"versioning": "versioned", "readHistory": False}) for name in CURRENT_ONLY},
    "Provenance": (("vread",), {"versioning": "versioned", "readHistory": False}),
}  # fmt: skip
# Types served by modules of their own (api.fhir.documents), absent from the read/search table.
ADDED: list[Resource] = [
    {"type": "DocumentReference", "versioning": "versioned", "readHistory": True,
     "interaction": [{"code": c} for c in ("read", "vread", "search-type", "history-instance")],
     "searchParam": [{"name": "patient", "type": "reference"}, {"name": "_count", "type": "number"}]},
    {"type": "Binary", "interaction": [{"code": "read"}]},
]  # fmt: skip


def extend(statement: Resource) -> Resource:
    """The statement with the interactions above, $validate on the writable types, and the
    system-level batch and transaction."""
    rest = statement["rest"][0]
    known = {r["type"] for r in rest["resource"]}
    rest["resource"] += [copy.deepcopy(r) for r in ADDED if r["type"] not in known]
    for resource in rest["resource"]:
        added, flags = INTERACTIONS.get(resource["type"], ((), {}))
        codes = [i["code"] for i in resource.get("interaction", [])]
        resource["interaction"] = [{"code": code} for code in dict.fromkeys([*codes, *added])]
        resource.update(flags)
        if "create" in added:
            resource["operation"] = [*resource.get("operation", []), _VALIDATE]
        if resource["type"] == "Patient":
            resource["operation"] = [*resource.get("operation", []), _MATCH, _SUMMARY]
        if resource["type"] == "Observation":  # the vital-signs profiles its vital signs conform to
            resource["supportedProfile"] = sorted({*resource.get("supportedProfile", []), *vitals.PROFILES.values()})
    interactions = [i["code"] for i in rest.get("interaction", [])]
    rest["interaction"] = [{"code": code} for code in dict.fromkeys([*interactions, "transaction", "batch"])]
    return statement
