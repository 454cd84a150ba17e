"""Health checks, metrics, request ids, OpenAPI and MessagePack negotiation."""

from __future__ import annotations

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, auth

Client = AsyncTestClient[Litestar]


async def test_health_and_ready_need_no_token(client: Client) -> None:
    assert (await client.get("/health")).json() == {"status": "ok", "checks": {}}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_metrics_count_requests(client: Client) -> None:
    await client.get("/health")
    text = (await client.get("/metrics")).text
    assert 'spean_http_requests_total{method="GET",route="/health",status="200"}' in text


async def test_request_id_is_echoed_or_made(client: Client) -> None:
    given = await client.get("/health", headers={"X-Request-ID": "abc12345-test"})
    assert given.headers["x-request-id"] == "abc12345-test"
    made = await client.get("/v1/me")
    assert len(made.headers["x-request-id"]) == 32
    assert made.json()["request_id"] == made.headers["x-request-id"]


async def test_messagepack_on_request(client: Client, factory: Factory) -> None:
    token = await factory.admin_token()
    facility = await factory.facility()
    packed = await client.get(f"/v1/facilities/{facility}", headers=auth(token, Accept="application/msgpack"))
    assert packed.headers["content-type"].startswith("application/msgpack")
    as_json = await client.get(f"/v1/facilities/{facility}", headers=auth(token))
    # Same document; MessagePack carries instants as its native timestamp type.
    assert msgspec.json.decode(msgspec.json.encode(msgspec.msgpack.decode(packed.content))) == as_json.json()
    assert len(packed.content) < len(as_json.content)


async def test_openapi_schema_is_served(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/v1/appointments" in schema["paths"]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
