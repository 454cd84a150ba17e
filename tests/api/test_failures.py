"""What leaves the server when something breaks: no stack traces or SQL, a request id, the code."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from api.context import RequestContextMiddleware
from api.errors import EXCEPTION_HANDLERS


@get("/boom")
async def boom() -> None:
    raise RuntimeError('relation "secret_table" does not exist at SELECT password FROM users')


async def test_unexpected_errors_leak_nothing() -> None:
    app = Litestar(
        [boom], exception_handlers=EXCEPTION_HANDLERS, middleware=[RequestContextMiddleware], logging_config=None
    )
    async with AsyncTestClient(app) as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal_error"
    assert "secret_table" not in response.text
    assert "Traceback" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]
