"""Outbound SMS through Twilio's REST API with the official SDK, without blocking the event loop
(`AsyncTwilioHttpClient`, aiohttp underneath, and `messages.create_async`).

Twilio's error answers become `TwilioRestException` in the SDK; they are sorted here into
"try again" (429, 5xx, network) and "never" (other 4xx, e.g. 21211 invalid number, 21610 the
number sent STOP to Twilio). The SDK's exception carries no headers, so the HTTP client below
keeps each answer's Retry-After in a context variable of the sending task (concurrent sends
never read each other's).

Twilio's Messages API has no idempotency key for creating a message: a send whose answer is lost
(accepted by Twilio, then the connection drops) cannot be told apart from one that never arrived,
so such a message is sent again (at least once; see sms.outbox).
"""

from __future__ import annotations

import base64
import contextvars
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from sms.sender import SmsRejected, SmsRetryable

_retry_after: contextvars.ContextVar[str | None] = contextvars.ContextVar("twilio_retry_after", default=None)
TIMEOUT_S = 10.0  # well inside the outbox lease, so a slow send is never claimed twice


class _HttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    async def request(self, method: str, url: str, **kwargs: Any) -> Response:
        # Basic auth as a header: the SDK's aiohttp.BasicAuth/auth= are deprecated in aiohttp 3.14.
        login, password = kwargs.pop("auth", None) or (None, None)
        if login is not None:
            token = base64.b64encode(f"{login}:{password}".encode()).decode()
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": f"Basic {token}"}
        response: Response = await super().request(method, url, **kwargs)
        headers = getattr(response, "headers", None) or {}
        _retry_after.set(headers.get("Retry-After"))
        return response


class TwilioSmsSender:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str = "",
        messaging_service_sid: str = "",
        api_base_url: str = "",
    ) -> None:
        self._credentials = (account_sid, auth_token)
        self._api_base_url = api_base_url.rstrip("/")
        self._sender: dict[str, str] = (
            {"messaging_service_sid": messaging_service_sid} if messaging_service_sid else {"from_": from_number}
        )
        self._http: _HttpClient | None = None
        self._client: Client | None = None

    def _twilio(self) -> Client:
        # Made on first use, inside the worker's event loop (aiohttp binds its session to one).
        if self._client is None:
            self._http = _HttpClient(timeout=TIMEOUT_S)
            self._client = Client(*self._credentials, http_client=self._http)
            if self._api_base_url:  # tests: a local server speaking Twilio's REST format
                self._client.api.base_url = self._api_base_url
        return self._client

    async def send(self, to: str, body: str, *, key: str, status_callback: str | None) -> str:
        extra: dict[str, str] = {"status_callback": status_callback} if status_callback else {}
        _retry_after.set(None)
        try:
            message = await self._twilio().messages.create_async(to=to, body=body, **self._sender, **extra)
        except TwilioRestException as exc:
            reason = f"twilio {exc.status} {exc.code}: {exc.msg}"
            if exc.status == 429 or exc.status >= 500:
                raise SmsRetryable(reason, _seconds(_retry_after.get())) from exc
            raise SmsRejected(reason) from exc
        except (aiohttp.ClientError, TimeoutError, TwilioException) as exc:
            raise SmsRetryable(f"twilio unreachable: {type(exc).__name__}: {exc}") from exc
        return str(message.sid)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to the computed back-off
