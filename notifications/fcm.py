"""Push through Firebase Cloud Messaging with the firebase-admin SDK (FCM HTTP v1, async).

Credentials: the service-account file named by GOOGLE_APPLICATION_CREDENTIALS; the SDK takes its
OAuth tokens from the file's token_uri. FCM_API_BASE_URL (tests only) sends the SDK's FCM v1 calls
to another base. The SDK's own retries are turned off: retries and back-off are the worker's, kept
in the database, so a restart neither forgets nor repeats them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Generator

import firebase_admin
import httpx
from firebase_admin import credentials, exceptions, messaging
from firebase_admin._http_client import GoogleAuthCredentialFlow, HttpxAsyncClient
from firebase_admin._retry import HttpxRetry
from google.auth.transport import requests as google_auth_requests

from notifications.push import Outcome, Push
from notifications.transport import AiohttpTransport

_BATCH = 500  # send_each_async's limit per call
_CONNECTIONS = 64  # keep-alive connections to FCM (HTTP/1.1: one request in flight on each)
_TIMEOUT_S = 10  # well inside the worker's lease
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
    """The SDK's OAuth flow (bearer token on each request, one forced refresh on a 401), with one
    google-auth transport for refreshes: the SDK's builds a requests.Session per request, about a
    tenth of the worker's CPU at a few hundred pushes a second."""

    def __init__(self, credential: credentials.Base) -> None:
        super().__init__(credential)
        self._refresher = google_auth_requests.Request()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        original = request.headers.copy()
        for attempt in range(self._max_refresh_attempts + 1):
            request.headers = original.copy()
            self.apply_auth_headers(request, self._refresher)
            response = yield request
            if response.status_code not in self._refresh_status_codes or attempt == self._max_refresh_attempts:
                return
            self._credential.refresh(self._refresher)


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
        # wire (notifications.transport): httpcore's pool was the worker's bottleneck.
        self._transport = AiohttpTransport(connections=_CONNECTIONS, timeout_s=_TIMEOUT_S)
        self._client = client._async_client = httpx.AsyncClient(
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
