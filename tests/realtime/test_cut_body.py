"""A request body cut short by the client (it closes its side mid-body) counts as the client's
fault (400 `body_incomplete`), not a server error: through a real server process, as only a real
socket can do it. The client is gone, so the server's own metrics tell what it answered."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

import httpx

from tests.factory import Factory
from tests.realtime.conftest import Servers


async def _count(base: str, status: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{base}/metrics")).text
    pattern = rf'spean_http_requests_total{{method="POST",route="/v1/appointments",status="{status}"}} ([0-9.e+]+)'
    return sum(float(m) for m in re.findall(pattern, text))


async def test_a_body_cut_short_is_the_clients_fault(rtc_servers: Servers, factory: Factory) -> None:
    token = await factory.admin_token()
    base = rtc_servers.http_a
    errors, refused = await _count(base, "500"), await _count(base, "400")
    address = urlsplit(base)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    head = (
        "POST /v1/appointments HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 500\r\n\r\n"
    )
    writer.write(head.encode() + b'{"patient_id": "')
    await writer.drain()
    writer.write_eof()  # the client goes away before the rest of the body
    await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    for _ in range(50):  # the server notices the disconnect on its own time
        if await _count(base, "400") > refused:
            break
        await asyncio.sleep(0.1)
    assert await _count(base, "400") == refused + 1
    assert await _count(base, "500") == errors
