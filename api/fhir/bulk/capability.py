"""What bulk export and SMART Backend Services add to the CapabilityStatement: the IG's
`export` operations at system, Patient and Group level, the Group type, and the SMART security
service with the oauth-uris extension naming the token endpoint (what a client looks for
besides /.well-known/smart-configuration)."""

from __future__ import annotations

from api.fhir.clinical import Resource
from api.smart.routes import token_url
from infra.config import Settings

_BULK = "http://hl7.org/fhir/uv/bulkdata"
_SECURITY = "http://terminology.hl7.org/CodeSystem/restful-security-service"
_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def _export(definition: str) -> dict[str, str]:
    return {"name": "export", "definition": f"{_BULK}/OperationDefinition/{definition}"}


def declare(statement: Resource, settings: Settings) -> Resource:
    statement["instantiates"] = [*statement.get("instantiates", []), f"{_BULK}/CapabilityStatement/bulk-data"]
    rest = statement["rest"][0]
    rest["operation"] = [*rest.get("operation", []), _export("export")]
    resources = rest["resource"]
    if not any(r["type"] == "Group" for r in resources):
        resources.append({"type": "Group", "interaction": [{"code": "read"}, {"code": "search-type"}]})
    for resource in resources:
        if resource["type"] == "Patient":
            resource["operation"] = [*resource.get("operation", []), _export("patient-export")]
        elif resource["type"] == "Group":
            resource["operation"] = [*resource.get("operation", []), _export("group-export")]
    security = rest.setdefault("security", {})
    services = security.setdefault("service", [])
    services.append({"coding": [{"system": _SECURITY, "code": "SMART-on-FHIR"}]})
    security["extension"] = [
        *security.get("extension", []),
        {"url": _OAUTH_URIS, "extension": [{"url": "token", "valueUri": token_url(settings)}]},
    ]
    security["description"] = (
        security.get("description", "") + "; backend clients: SMART Backend Services (client_credentials with "
        "a private_key_jwt assertion, see /.well-known/smart-configuration) for bulk $export"
    ).lstrip("; ")
    return statement
