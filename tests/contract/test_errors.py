"""One error contract: every error, the framework's own included, is the same problem+json (or an
OperationOutcome under /fhir) with a stable code and the request id, and every answer carries
X-Request-ID. Checked across every route of the schema, not on a few examples."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.fhir.errors import REQUEST_ID_EXTENSION, code_of
from tests.factory import Factory, auth
from tests.fhir.test_resources import validate

Client = AsyncTestClient[Litestar]
_METHODS = ("get", "post", "put", "patch", "delete")


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def _outcome(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert code_of(body) == code, body
    assert body["extension"] == [{"url": REQUEST_ID_EXTENSION, "valueString": response.headers["x-request-id"]}]
    validate(body)  # a valid R4 OperationOutcome, whatever the status
    return body


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


@pytest.fixture(scope="module")
async def schema(client: Client) -> dict[str, Any]:
    document: dict[str, Any] = (await client.get("/schema/openapi.json")).json()
    return document


async def test_every_unlisted_method_is_a_405_with_allow(client: Client, schema: dict[str, Any]) -> None:
    for path, item in schema["paths"].items():
        documented = {m for m in _METHODS if m in item}
        missing = next(m for m in _METHODS if m not in documented)
        response = await client.request(missing.upper(), _concrete(path))
        allowed = {m.strip().lower() for m in response.headers["allow"].split(",")}
        assert documented <= allowed, (path, allowed)
        if path.startswith("/fhir"):
            _outcome(response, 405, "method_not_allowed")
        else:
            _problem(response, 405, "method_not_allowed")


async def test_options_lists_every_method_of_the_path(client: Client, schema: dict[str, Any]) -> None:
    for path, item in schema["paths"].items():
        response = await client.options(_concrete(path))
        assert response.status_code == 204, (path, response.text)
        allowed = {m.strip().lower() for m in response.headers["allow"].split(",")}
        assert allowed == {m for m in _METHODS if m in item} | {"options"}, (path, allowed)


async def test_every_protected_operation_refuses_a_missing_token_in_its_format(
    client: Client, schema: dict[str, Any]
) -> None:
    for path, item in schema["paths"].items():
        for method in (m for m in _METHODS if m in item):
            if item[method].get("security") == []:
                continue
            response = await client.request(method.upper(), _concrete(path), json={})
            assert response.headers["www-authenticate"].startswith("Bearer"), (method, path)
            if path.startswith("/fhir"):
                _outcome(response, 401, "missing_token")
            else:
                _problem(response, 401, "missing_token")


async def test_unknown_routes_and_resource_types(client: Client, factory: Factory) -> None:
    token = auth(await factory.admin_token())
    _problem(await client.get("/v1/nothing-here", headers=token), 404, "route_not_found")
    _problem(await client.get("/nothing-at-all"), 404, "route_not_found")
    _problem(await client.get("/schema/nothing"), 404, "route_not_found")
    websocket_only = await client.get("/v1/rtc", headers=token)
    _problem(websocket_only, 426, "websocket_required")
    assert websocket_only.headers["upgrade"] == "websocket"
    _problem(await client.get("/schema/nothing.json"), 404, "route_not_found")
    _problem(await client.get("/schema/assets/nothing.js"), 404, "route_not_found")
    _outcome(await client.get("/fhir/Basic", headers=token), 404, "unknown_resource_type")
    _outcome(await client.get("/fhir/Patient/not-a-uuid/x/y", headers=token), 404, "route_not_found")
    _outcome(await client.get("/fhir/Nothing/1/2/3/4"), 404, "route_not_found")


async def test_framework_errors_share_the_contract(client: Client, factory: Factory) -> None:
    token = await factory.admin_token()
    # validation of parameters and bodies, under /v1 and /fhir
    _problem(await client.get("/v1/appointments", params={"limit": 0}, headers=auth(token)), 400, "invalid_input")
    as_json = auth(token, **{"Content-Type": "application/json"})
    body = _problem(await client.post("/v1/facilities", content=b"{", headers=as_json), 400, "malformed_body")
    assert body["errors"][0]["field"] == "body"
    _outcome(
        await client.get("/fhir/Patient", params={"_count": "x"}, headers=auth(token)), 400, "invalid_search_value"
    )
    # the public name of a renamed parameter, never the handler's (`from`, not `from_`)
    for path, params in (("/v1/slots", {"from": "zz", "to": "2030-01-01"}), ("/v1/appointments", {"from": "zz"})):
        bad = await client.get(path, params=params, headers=auth(token))
        assert [e["field"] for e in _problem(bad, 400, "invalid_input")["errors"]] == ["from"], path
    # raised in a middleware: the bearer check and the channel header
    _problem(await client.get("/v1/me", headers={"Authorization": "Basic x"}), 401, "invalid_token")
    _problem(await client.get("/v1/me", headers=auth(token, **{"X-Client-Channel": "sms"})), 422, "invalid_channel")
    # answered by the transaction middleware itself
    bad_key = auth(token, **{"Idempotency-Key": "has space"})
    _problem(await client.post("/v1/facilities", json={}, headers=bad_key), 400, "invalid_idempotency_key")
    # the body limit, with and without an idempotency key
    big = b"[" + b"0," * 600_000 + b"0]"
    _problem(await client.post("/v1/facilities", content=big, headers=as_json), 413, "payload_too_large")
    big_keyed = auth(token, **{"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"})
    _problem(await client.post("/v1/facilities", content=big, headers=big_keyed), 413, "payload_too_large")
    _outcome(await client.post("/fhir/", content=big, headers=as_json), 413, "payload_too_large")
    # a body that is not JSON, under /v1 and /fhir
    _problem(await client.post("/v1/facilities", content=b"x", headers=auth(token)), 415, "unsupported_media_type")
    as_text = auth(token, **{"Content-Type": "text/plain"})
    _outcome(await client.post("/fhir/", content=b"{}", headers=as_text), 415, "unsupported_media_type")


PAGES = (
    "/health",
    "/ready",
    "/metrics",
    "/schema",
    "/schema/openapi.json",
    "/schema/swagger",
    "/schema/assets/swagger-ui.css",
    "/schema/assets/swagger-ui-bundle.js",
    "/fhir/metadata",
    "/rtc/consult",
)


async def test_every_answer_carries_a_request_id(client: Client) -> None:
    for path in PAGES:
        response = await client.get(path)
        assert response.status_code == 200, path
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), path
    given = await client.get("/nothing-here", headers={"X-Request-ID": "trace-1234-abcd"})
    assert _problem(given, 404, "route_not_found")["request_id"] == "trace-1234-abcd"
    unsafe = await client.get("/health", headers={"X-Request-ID": "bad id;<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])


async def test_every_page_names_one_media_type_and_at_most_one_charset(client: Client) -> None:
    # A text/* type that carried its own charset got a second one appended by the framework.
    for path in PAGES:
        content_type = (await client.get(path)).headers["content-type"]
        parameters = [part.strip().split("=")[0] for part in content_type.split(";")[1:]]
        assert len(parameters) == len(set(parameters)), (path, content_type)


async def test_one_log_line_per_error_response(live: tuple[str, Path]) -> None:
    base, folder = live
    sent: dict[str, tuple[str, str, int, str]] = {}
    async with httpx.AsyncClient(base_url=base) as http:
        for n, (method, path, status, code) in enumerate(
            [
                ("GET", "/v1/nothing-here", 404, "route_not_found"),
                ("DELETE", "/v1/facilities", 405, "method_not_allowed"),
                ("GET", "/v1/me", 401, "missing_token"),
                ("GET", "/fhir/Basic", 401, "missing_token"),
                ("GET", "/fhir/Nothing/1/2/3", 404, "route_not_found"),
                ("POST", "/v1/auth/otp", 400, "malformed_body"),
                ("POST", "/v1/auth/token", 415, "unsupported_media_type"),
            ]
        ):
            request_id = f"log-check-{uuid.uuid4().hex[:8]}-{n}"
            content_type = "text/plain" if status == 415 else "application/json"
            headers = {"X-Request-ID": request_id, "Content-Type": content_type}
            response = await http.request(method, path, headers=headers, content=b"{")
            assert response.status_code == status, (path, response.text)
            assert response.headers["x-request-id"] == request_id
            sent[request_id] = (method, path, status, code)
    lines = [json.loads(line) for line in (folder / "server.log").read_text().splitlines() if line.startswith("{")]
    for request_id, (method, path, status, code) in sent.items():
        logged = [e for e in lines if e.get("event") == "error_response" and e.get("request_id") == request_id]
        assert len(logged) == 1, (request_id, logged)
        assert (logged[0]["method"], logged[0]["path"], logged[0]["status"], logged[0]["code"]) == (
            method,
            path,
            status,
            code,
        )


async def test_websocket_handshakes_answer_in_the_error_contract(live: tuple[str, Path]) -> None:
    # The server answered every refused handshake with a bare 403 and no body nor request id.
    base, _ = live
    ws = base.replace("http://", "ws://")
    refused = {
        "/v1/rtc-nothing": (404, "route_not_found", "application/problem+json"),
        "/v1/rtc/%00": (404, "route_not_found", "application/problem+json"),
        "/health": (400, "bad_request", "application/problem+json"),
        "/fhir/Patient": (400, "bad_request", "application/fhir+json"),
    }
    for path, (status, code, media_type) in refused.items():
        with pytest.raises(websockets.InvalidStatus) as refusal:
            async with websockets.connect(ws + path):
                pass
        response = refusal.value.response
        assert response.status_code == status, path
        assert response.headers["content-type"] == media_type, path
        request_id = response.headers["x-request-id"]
        document = json.loads(response.body or b"")
        if media_type == "application/fhir+json":
            assert document["issue"][0]["details"]["coding"][0]["code"] == code, path
            assert document["extension"][0]["valueString"] == request_id, path
        else:
            assert (document["code"], document["request_id"]) == (code, request_id), path
    async with websockets.connect(ws + "/v1/rtc") as accepted:
        assert accepted.response is not None
        assert re.fullmatch(r"[0-9a-f]{32}", accepted.response.headers["x-request-id"])
