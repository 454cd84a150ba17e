"""The wire under firebase-admin's async client: aiohttp instead of httpcore.

firebase-admin's `send_each_async` sends one HTTP request per message through an httpx client.
httpx's own transport (httpcore) spends milliseconds of CPU per request once a batch's requests
queue on its pool (each checks every pooled connection's socket), so it, not FCM, set the
worker's ceiling (bench/notifications). This transport keeps everything above the wire the SDK's:
message encoding, OAuth (the SDK's auth flow signs each request), error parsing (a non-2xx
answer comes back as an httpx.Response the SDK turns into UnregisteredError & co); only the
connection pool is aiohttp's (keep-alive, `limit` connections per host). aiohttp is already
installed for the Twilio SDK's async client.
"""

from __future__ import annotations

import aiohttp
import httpx


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, connections: int, timeout_s: float) -> None:
        self._connections = connections
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None  # made in the loop that uses it

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit_per_host=self._connections, ttl_dns_cache=300),
                timeout=self._timeout,
                auto_decompress=False,  # the bytes as sent: httpx decodes them by their headers
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        try:
            async with self._open().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body,
                allow_redirects=False,
            ) as response:
                content = await response.read()
                return httpx.Response(response.status, headers=response.raw_headers, content=content, request=request)
        except TimeoutError as exc:  # as httpcore would raise them: the SDK maps these to its errors
            raise httpx.TimeoutException(str(exc) or "timed out", request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
