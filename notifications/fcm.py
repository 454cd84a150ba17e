"""Push through Firebase Cloud Messaging with the firebase-admin SDK (FCM HTTP v1, async).

Credentials: the service-account file named by GOOGLE_APPLICATION_CREDENTIALS; the SDK takes its
OAuth tokens from the file's token_uri. FCM_API_BASE_URL (tests only) sends the SDK's FCM v1 calls
to another base. The SDK's own retries are turned off: retries and back-off are the worker's, kept
in the database, so a restart neither forgets nor repeats them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Generator
from typing import Any

import firebase_admin
import httpx
import msgspec
from firebase_admin import credentials, exceptions, messaging
from firebase_admin._http_client import GoogleAuthCredentialFlow, HttpxAsyncClient
from firebase_admin._retry import HttpxRetry
from google.auth import _helpers as google_auth_helpers
from google.auth.transport import requests as google_auth_requests

from notifications.push import Outcome, Push
from notifications.transport import LeanTransport

_BATCH = 500  # send_each_async's limit per call
_CONNECTIONS = 64  # keep-alive connections to FCM (HTTP/1.1: one request in flight on each)
_TIMEOUT_S = 10  # well inside the worker's lease
_URLS_KEPT = 16  # the SDK's FCM send URL and its few others
_KEEP_S = 60.0  # longest an OAuth header set is reused without asking google-auth again
# FCM's error codes that say the token is dead: retire it and fall back to SMS.
_DEAD_TOKEN = (messaging.UnregisteredError, exceptions.InvalidArgumentError, messaging.SenderIdMismatchError)
_RETRYABLE = (
    exceptions.UnavailableError,
    exceptions.ResourceExhaustedError,  # 429 (QuotaExceededError is one)
    exceptions.InternalError,
    exceptions.DeadlineExceededError,
    exceptions.UnknownError,
)


class _AuthFlow(GoogleAuthCredentialFlow):  # type: ignore[misc]  # the SDK is untyped
    """The SDK's OAuth flow (the credential's headers on each request, one forced refresh on a
    401), with the headers google-auth adds kept while its token stays fresh: asking google-auth
    for them per request (validity and expiry checks, the regional-access-boundary hook, the
    metrics header) was a tenth of the CPU of a push. What it adds is the same for every request
    with the same method, URL and headers it reads, so a kept entry is used only for those, and
    for at most `_KEEP_S`, and never past the point where google-auth would refresh the token
    itself. One google-auth transport serves the refreshes (the SDK builds a requests.Session per
    request)."""

    def __init__(self, credential: credentials.Base) -> None:
        super().__init__(credential)
        self._refresher = google_auth_requests.Request()
        self._kept: _KeptHeaders | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        for attempt in range(self._max_refresh_attempts + 1):
            original = self._apply(request)
            response = yield request
            if response.status_code not in self._refresh_status_codes or attempt == self._max_refresh_attempts:
                return
            for name, value in original.items():  # the request as it came, for google-auth again
                if value is None:
                    del request.headers[name]
                else:
                    request.headers[name] = value
            self._kept = None
            self._credential.refresh(self._refresher)

    def _apply(self, request: httpx.Request) -> dict[str, str | None]:
        """Put google-auth's headers on the request; return what they replaced (None: absent)."""
        kept = self._kept
        where = (request.method, request.url.raw_host, request.url.raw_path)
        if (
            kept is not None
            and time.monotonic() < kept.until
            and kept.where == where
            and all(request.headers.get(name) == value for name, value in kept.before.items())
        ):
            for name, value in kept.after.items():
                request.headers[name] = value
            return kept.before
        before = dict(request.headers)
        self.apply_auth_headers(request, self._refresher)  # google-auth: refreshes the token if due
        after = dict(request.headers)
        original = {
            name: before.get(name) for name in before.keys() | after.keys() if before.get(name) != after.get(name)
        }
        if before.keys() - after.keys():
            self._kept = None  # a header removed: not replayed, google-auth is asked each time
        else:
            self._kept = _KeptHeaders(
                where=where,
                before=original,
                after={name: after[name] for name in after if name in original},
                until=time.monotonic() + _fresh_for(self._credential),
            )
        return original


class _KeptHeaders(msgspec.Struct, frozen=True, kw_only=True):
    where: tuple[str, bytes, bytes]
    before: dict[str, str | None]  # the touched headers' values before google-auth saw them
    after: dict[str, str]
    until: float  # time.monotonic()


def _fresh_for(credential: Any) -> float:
    """Seconds the credential's headers may be reused: until google-auth would see its token as
    due for a refresh (its REFRESH_THRESHOLD before expiry), and never more than _KEEP_S."""
    expiry: dt.datetime | None = getattr(credential, "expiry", None)
    if expiry is None:
        return _KEEP_S
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # google-auth's expiry is naive UTC
    due: dt.timedelta = expiry - google_auth_helpers.REFRESH_THRESHOLD - now
    return max(0.0, min(_KEEP_S, due.total_seconds()))


class _Cookies(httpx.Cookies):
    """httpx's cookie jar, which reads an answer only if it sets a cookie: the jar's extraction
    builds urllib request and response stand-ins for every answer (a seventh of the client's CPU
    per push), and FCM's answers set none."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if any(name.lower() in (b"set-cookie", b"set-cookie2") for name, _ in response.headers.raw):
            super().extract_cookies(response)


class _Client(httpx.AsyncClient):
    """httpx's client with the jar above (httpx takes no jar class of its own choosing), and the
    URLs it is given parsed once: the SDK passes its FCM URL as a string on every send, and
    parsing it was a tenth of the CPU of a push. URLs are immutable, so one parse serves all."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.cookies = options.get("cookies")
        self._urls: dict[str, tuple[httpx.URL, httpx.URL]] = {}  # URL as given → (base URL, merged)

    def _merge_url(self, url: httpx.URL | str) -> httpx.URL:
        if not isinstance(url, str):
            return super()._merge_url(url)
        base = self.base_url
        known = self._urls.get(url)
        if known is None or known[0] is not base:  # new, or the base URL changed since
            if len(self._urls) >= _URLS_KEPT:
                self._urls.clear()
            known = self._urls[url] = (base, super()._merge_url(url))
        return known[1]

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._jar = _Cookies(cookies)


class FcmPushSender:
    def __init__(self, credentials_file: str, api_base_url: str = "") -> None:
        cred = credentials.Certificate(credentials_file)
        # A named app of our own: never the process-wide default app somebody else may set up.
        self._app = firebase_admin.initialize_app(cred, {"httpTimeout": _TIMEOUT_S}, name=f"spean-{uuid.uuid4()}")
        service = messaging._get_messaging_service(self._app)
        if api_base_url:
            service._fcm_url = f"{api_base_url.rstrip('/')}/v1/projects/{cred.project_id}/messages:send"
        client = HttpxAsyncClient(
            credential=service._credential, timeout=_TIMEOUT_S, retry_config=HttpxRetry(max_retries=0)
        )
        # The SDK's client as it builds it (its headers, its OAuth flow, no retries) over another
        # wire (notifications.transport): httpcore's pool, then aiohttp's, cost more CPU per push
        # than the SDK itself.
        self._transport = LeanTransport(connections=_CONNECTIONS)
        self._client = client._async_client = _Client(
            timeout=_TIMEOUT_S,
            headers=client._headers,
            auth=_AuthFlow(service._credential),
            transport=self._transport,
        )
        service._async_client = client

    async def send(self, pushes: list[Push]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for start in range(0, len(pushes), _BATCH):
            chunk = pushes[start : start + _BATCH]
            try:
                batch = await messaging.send_each_async([_message(p) for p in chunk], app=self._app)
            except exceptions.FirebaseError as exc:  # the whole call failed (e.g. no OAuth token)
                outcomes += [Outcome(verdict="retry", error=f"{exc.code}: {exc}") for _ in chunk]
                continue
            outcomes += [_outcome(r) for r in batch.responses]
        return outcomes

    async def aclose(self) -> None:
        await self._client.aclose()
        # delete_app closes the SDK's clients with asyncio.run(): from a thread, ours already closed
        await asyncio.to_thread(firebase_admin.delete_app, self._app)


def _outcome(response: messaging.SendResponse) -> Outcome:
    if response.success:
        return Outcome(verdict="sent")
    exc = response.exception
    error = f"{exc.code}: {exc}" if isinstance(exc, exceptions.FirebaseError) else repr(exc)
    if isinstance(exc, _DEAD_TOKEN):
        return Outcome(verdict="dead_token", error=error)
    if isinstance(exc, _RETRYABLE):
        return Outcome(verdict="retry", error=error, retry_after_s=_retry_after(exc))
    return Outcome(verdict="failed", error=error)


def _retry_after(exc: exceptions.FirebaseError) -> float | None:
    response = exc.http_response
    value = response.headers.get("Retry-After") if response is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from Google; the worker's own back-off applies


def _message(p: Push) -> messaging.Message:
    """The FCM message, its Android and APNs options chosen for what it says.

    high: a call is waiting: delivered at once even to a dozing phone, dropped after a short TTL
    (a late "join now" is worse than none). normal: reminders and news, collapsed by key so an
    offline phone shows only the latest. silent: data only, wakes the app to sync, shows nothing.
    """
    ttl = dt.timedelta(seconds=p.ttl_s) if p.ttl_s is not None else None
    apns_headers: dict[str, str] = {"apns-priority": "10" if p.priority == "high" else "5"}
    if p.collapse_key:
        apns_headers["apns-collapse-id"] = p.collapse_key[:64]
    if p.ttl_s is not None:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=p.ttl_s)
        apns_headers["apns-expiration"] = str(int(expires.timestamp()))
    if p.priority == "silent":
        apns_headers["apns-push-type"] = "background"
        aps = messaging.Aps(content_available=True)
        notification = None
    else:
        apns_headers["apns-push-type"] = "alert"
        aps = messaging.Aps(sound="default")
        notification = messaging.Notification(title=p.title, body=p.body)
    return messaging.Message(
        token=p.token,
        data=p.data,
        notification=notification,
        android=messaging.AndroidConfig(
            priority="high" if p.priority == "high" else "normal",
            ttl=ttl,
            collapse_key=p.collapse_key,
        ),
        apns=messaging.APNSConfig(headers=apns_headers, payload=messaging.APNSPayload(aps=aps)),
    )
