"""The docs page works offline: Swagger UI's assets come from this server, not a CDN, and the
schema it shows says which routes are public and what errors each operation answers."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.openapi.spec import Operation
from litestar.testing import AsyncTestClient

from api.openapi import error_statuses

Client = AsyncTestClient[Litestar]
_METHODS = ("get", "put", "post", "delete", "patch")


async def test_swagger_page_loads_every_asset_locally(client: Client) -> None:
    page = await client.get("/schema/swagger")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert len(urls) >= 4, urls  # the JS bundle, the preset, the CSS and the icon
    for url in urls:
        assert url.startswith("/schema/assets/"), f"{url} is not served by this server"
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0, url


async def test_public_routes_are_marked_public(client: Client) -> None:
    schema: dict[str, Any] = (await client.get("/schema/openapi.json")).json()
    public = {
        (method, path)
        for path, item in schema["paths"].items()
        for method in _METHODS
        if method in item and item[method].get("security") == []
    }
    expected = {("get", "/health"), ("get", "/ready"), ("get", "/metrics"), ("get", "/fhir/metadata")}
    expected |= {("post", p) for p in schema["paths"] if p.startswith("/v1/auth/")}
    expected |= {("post", "/v1/sms/inbound"), ("post", "/v1/sms/status")}  # Twilio's webhooks: signed, no bearer
    expected.add(("post", "/v1/ussd"))  # no bearer token: the gateway sends its shared secret instead
    expected.add(("post", "/v1/invitations/open"))  # a guest's page: the invitation link is the credential
    # SMART Backend Services: discovery, and the token endpoint (the signed assertion is the credential).
    expected |= {("get", "/.well-known/smart-configuration"), ("post", "/auth/token")}
    # The guest's pre-call check: the opened link (token and browser key) is the credential.
    expected |= {("post", "/v1/invitations/ice-servers"), ("post", "/v1/invitations/echo")}
    assert public == expected
    assert schema["security"] == [{"bearer": []}]


# The Bulk Data IG's own formats: the status manifest is application/json, files are NDJSON.
_BULK_FORMATS = {"/fhir/bulk/status/{job_id}", "/fhir/bulk/files/{job_id}/{name}"}


async def test_every_operation_documents_its_errors_in_its_format(client: Client) -> None:
    schema: dict[str, Any] = (await client.get("/schema/openapi.json")).json()
    assert {"Problem", "FieldError", "OperationOutcome"} <= set(schema["components"]["schemas"])
    for path, item in schema["paths"].items():
        for method in (m for m in _METHODS if m in item):
            operation = item[method]
            public = operation.get("security") == []
            fhir = path.startswith("/fhir")
            errors = {int(s) for s in operation["responses"] if int(s) >= 400}
            if not public:
                assert {401, 403, 404, 422, 503} <= errors, (method, path, errors)
            if method in ("post", "put", "patch"):
                assert {400, 413, 415} <= errors, (method, path, errors)
            for status in errors:
                if (path, status) == ("/ready", 503):
                    continue  # readiness answers with its Health report, documented as such
                if path == "/auth/token" and status in (400, 401):
                    continue  # SMART's token endpoint answers OAuth's JSON errors (RFC 6749 §5.2)
                content = operation["responses"][str(status)]["content"]
                media, ref = (
                    ("application/fhir+json", "OperationOutcome") if fhir else ("application/problem+json", "Problem")
                )
                assert content == {media: {"schema": {"$ref": f"#/components/schemas/{ref}"}}}, (method, path)
            for status, response in operation["responses"].items():
                assert response["headers"]["X-Request-ID"]["required"] is True, (method, path, status)
                if fhir and int(status) < 400 and "content" in response and path not in _BULK_FORMATS:
                    assert set(response["content"]) == {"application/fhir+json"}, (method, path)


def test_write_operations_without_a_token_never_miss_401() -> None:
    statuses = error_statuses("/v1/things", "post", Operation(), public=False)
    assert {400, 401, 403, 404, 409, 413, 415, 422, 503} <= statuses


async def test_links_chain_created_resources(client: Client) -> None:
    schema: dict[str, Any] = (await client.get("/schema/openapi.json")).json()
    operation_ids = {op["operationId"] for item in schema["paths"].values() for m, op in item.items() if m in _METHODS}
    booked = schema["paths"]["/v1/appointments"]["post"]["responses"]["201"]["links"]
    for action in ("get", "reschedule", "cancel"):
        path = "/v1/appointments/{appointment_id}" + ("" if action == "get" else f"/{action}")
        target = schema["paths"][path]["get" if action == "get" else "post"]
        assert booked[target["operationId"]]["parameters"] == {"appointment_id": "$response.body#/id"}
    registered = schema["paths"]["/v1/patients"]["post"]["responses"]["201"]["links"]
    read = schema["paths"]["/v1/patients/{patient_id}"]["get"]["operationId"]
    assert registered[read]["parameters"] == {"patient_id": "$response.body#/id"}
    closure = schema["paths"]["/v1/facilities/{facility_id}/closures"]["post"]["responses"]["201"]["links"]
    assert {"facility_id": "$request.path.facility_id", "exception_id": "$response.body#/id"} in [
        link["parameters"] for link in closure.values()
    ]
    for item in schema["paths"].values():
        for method in (m for m in _METHODS if m in item):
            for response in item[method]["responses"].values():
                for link in response.get("links", {}).values():
                    assert link["operationId"] in operation_ids


async def test_types_are_documented_as_sent(client: Client) -> None:
    schemas: dict[str, Any] = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    roles = schemas["Me"]["properties"]["roles"]["items"]
    assert roles["type"] == "array"
    assert roles["minItems"] == roles["maxItems"] == 2
    start = schemas["RuleOut"]["properties"]["start"]
    assert "format" not in start
    assert re.fullmatch(start["pattern"], "08:00:00")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
async def test_swagger_page_renders_with_no_network_beyond_this_server(live: tuple[str, Path]) -> None:
    from playwright.async_api import Route, async_playwright

    base, _ = live
    outside: list[str] = []

    async def only_this_server(route: Route) -> None:
        if route.request.url.startswith(base):
            await route.continue_()
        else:  # what an offline clinic network would do to a CDN request
            outside.append(route.request.url)
            await route.abort()

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        try:
            page = await browser.new_page()
            await page.route("**/*", only_this_server)
            await page.goto(f"{base}/schema/swagger")
            # Swagger UI drew the operations: its JS and CSS loaded from this server.
            await page.locator(".opblock").first.wait_for(timeout=20_000)
            assert await page.locator(".opblock").count() > 50
        finally:
            await browser.close()
    assert outside == []


def _segment_admits(template: str, literal: str, parameters: dict[str, dict[str, Any]]) -> bool:
    """Whether a `{name}` segment of a documented path may take the literal segment of another."""
    if not (template.startswith("{") and template.endswith("}")):
        return template == literal
    if literal.startswith("{"):
        return False
    schema = parameters[template[1:-1]]
    if "enum" in schema:
        return literal in schema["enum"]
    return schema.get("type") == "string" and "format" not in schema and "pattern" not in schema


async def test_no_documented_path_is_served_by_another_route(client: Client) -> None:
    # /fhir/{resource_type} claimed every type with its own search parameters, but a request for
    # /fhir/Practitioner is served by Practitioner's route, which takes none of them: a client
    # (or a fuzzer) following the schema got its parameters silently ignored.
    schema: dict[str, Any] = (await client.get("/schema/openapi.json")).json()
    shadowed = []
    for path, item in schema["paths"].items():
        for method in (m for m in _METHODS if m in item):
            parameters = {p["name"]: p["schema"] for p in item[method].get("parameters", []) if p["in"] == "path"}
            for other, other_item in schema["paths"].items():
                template, literal = path.split("/"), other.split("/")
                if other == path or method not in other_item or len(template) != len(literal):
                    continue
                if all(_segment_admits(t, o, parameters) for t, o in zip(template, literal, strict=True)):
                    shadowed.append((method, path, other))
    assert not shadowed
