"""What every request pays for is worked out once per route, not once per request: the machinery's
caches hold (a regression here costs CPU on every answer, which no other test would see)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from api import query_guard
from api.body import StrictRequest


@post("/things", status_code=200)
async def make_thing(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    return data


async def test_query_rules_are_read_once_per_route_also_for_a_route_without_query_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: list[str] = []
    original = query_guard.query_kinds

    def counting(handler: Any) -> Any:
        read.append(handler.handler_name)
        return original(handler)

    monkeypatch.setattr(query_guard, "query_kinds", counting)
    app = Litestar([make_thing], middleware=[query_guard.InputGuardMiddleware], request_class=StrictRequest)
    async with AsyncTestClient(app) as client:
        for _ in range(3):
            answer = await client.post("/things", json={"a": 1})
            assert answer.status_code == 200, answer.text
    assert read == ["make_thing"]


async def test_a_body_is_read_by_its_own_content_type_and_length() -> None:
    """StrictRequest reads Content-Type and Content-Length from the scope: the same answers as
    through Litestar's header map."""
    app = Litestar([make_thing], request_class=StrictRequest)
    async with AsyncTestClient(app) as client:
        ok = await client.post("/things", content=b'{"a": 2}', headers={"Content-Type": "application/json"})
        assert ok.json() == {"a": 2}
        wrong = await client.post("/things", content=b'{"a": 2}', headers={"Content-Type": "text/plain"})
        assert wrong.status_code == 415
        bad = await client.post(
            "/things", content=b'{"a": 2}', headers={"Content-Type": "application/json", "Content-Length": "x"}
        )
        assert bad.status_code == 400
