"""One database transaction per request, and Idempotency-Key on POST.

The transaction opens before the handler runs and commits after it answered 2xx/3xx, before the
answer leaves; any other answer rolls it back. Handlers (through the `conn` dependency) and the
audit trail write in it, so an act and its record commit together or not at all.

Idempotency: a phone that lost the answer retries with the same key and gets the first answer.
The key is claimed, the handler's writes are made and the answer is stored in that ONE
transaction, so a retry never sees a half-done request, and a concurrent duplicate waits on the
key's row until the first commits, then replays it. Only successes are kept: an error rolls
everything back, so a retry runs again. The same key with a different body is a 422.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPRequestEvent, Message, Receive, ReceiveMessage, Scope, Send

from api.asgi_util import header, send_problem
from infra import outage

SCOPE_CONN = "spean.conn"
NO_TRANSACTION = {"transaction": False}  # route opt for handlers that need no database
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_REPLAYED_HEADERS = {b"content-type", b"location", b"etag"}
MAX_BODY = 1_048_576


class _RollBack(Exception):
    """Leave the transaction without committing: the handler answered with an error."""


class TransactionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        if scope["type"] != ScopeType.HTTP or (handler is not None and not handler.opt.get("transaction", True)):
            await self.app(scope, receive, send)
            return
        key = header(scope, b"idempotency-key") if scope.get("method") == "POST" else None
        body = b""
        if key is not None:
            if not _KEY.match(key):
                await send_problem(
                    send, scope, 400, "invalid_idempotency_key", "Idempotency-Key is 1 to 255 visible ASCII characters"
                )
                return
            read = await _read_body(receive)
            if read is None:
                await send_problem(send, scope, 413, "payload_too_large", f"the body exceeds {MAX_BODY} bytes")
                return
            body = read
        user = scope.get("user")
        principal = str(user.user_id) if user is not None else "anonymous"
        state = scope["app"].state
        if state.migrations_pending:
            # Started while PostgreSQL was away: the schema is brought up to date in the background.
            await _send_unavailable(send, scope, outage.POSTGRES)
            return
        captured: list[Message] = []
        sent = False

        async def send_once(message: Message) -> None:
            nonlocal sent
            sent = True
            await send(message)

        try:
            async with state.pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        fingerprint = b""
                        if key is not None:
                            fingerprint = _fingerprint(scope, body)
                            if not await _claim(conn, principal, key, fingerprint, state.settings.idempotency_ttl_s):
                                await _replay(conn, scope, send_once, principal, key, fingerprint)
                                return
                        scope[SCOPE_CONN] = conn  # type: ignore[literal-required]
                        captured = await _run(self.app, scope, body if key is not None else None, receive)
                        status = cast("int", captured[0].get("status", 500)) if captured else 500
                        if not 200 <= status < 400:
                            raise _RollBack
                        if key is not None:
                            await conn.execute(
                                "UPDATE idempotency_keys SET status_code = $3, headers = $4, body = $5 "
                                "WHERE principal = $1 AND key = $2",
                                principal,
                                key,
                                status,
                                _kept_headers(captured[0]),
                                _joined_body(captured),
                            )
                except _RollBack:
                    pass
                except Exception as exc:
                    if outage.unavailable(exc) is not None:
                        # Half-dead: never hand it to the next request (it may be gone already).
                        with contextlib.suppress(Exception):
                            conn.terminate()
                    raise
                finally:
                    scope.pop(SCOPE_CONN, None)  # type: ignore[misc]
        except Exception as exc:
            # PostgreSQL went away while we acquired, queried, committed or rolled back (the answer
            # was held back, so nothing was sent yet): a retryable 503, never a bare 500. Whether a
            # failed COMMIT landed is unknown; a retry with the same Idempotency-Key finds out.
            dependency = outage.unavailable(exc)
            if dependency is None:
                raise
            dependency.down(exc)
            if not sent:
                await _send_unavailable(send, scope, dependency)
            return
        outage.POSTGRES.up()
        for message in captured:
            await send(message)


async def _send_unavailable(send: Send, scope: Scope, dependency: outage.Dependency) -> None:
    retry_after = str(outage.RETRY_AFTER_S).encode()
    detail = f"{dependency.name} is unavailable for a moment; retry after {outage.RETRY_AFTER_S} s"
    await send_problem(send, scope, 503, dependency.code, detail, [(b"retry-after", retry_after)])


def _fingerprint(scope: Scope, body: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in (b"POST", scope["path"].encode(), scope.get("query_string", b""), body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.digest()


async def _claim(conn: Any, principal: str, key: str, fingerprint: bytes, ttl_s: int) -> bool:
    """Take the key, or find it taken (after waiting for a concurrent holder to finish)."""
    claimed = await conn.fetchval(
        """INSERT INTO idempotency_keys (principal, key, fingerprint, expires_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (principal, key) DO UPDATE
              SET fingerprint = EXCLUDED.fingerprint, status_code = NULL, headers = NULL, body = NULL,
                  created_at = now(), expires_at = EXCLUDED.expires_at
              WHERE idempotency_keys.expires_at < now()
           RETURNING 1""",
        principal,
        key,
        fingerprint,
        datetime.now(UTC) + timedelta(seconds=ttl_s),
    )
    return claimed is not None


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _run(app: ASGIApp, scope: Scope, body: bytes | None, receive: Receive) -> list[Message]:
    """Run the app, holding its answer back until the transaction is settled."""
    delivered = body is None

    async def replay_receive() -> ReceiveMessage:
        nonlocal delivered
        if not delivered:
            delivered = True
            return HTTPRequestEvent(type="http.request", body=body or b"", more_body=False)
        return await receive()

    captured: list[Message] = []

    async def capture(message: Message) -> None:
        captured.append(message)

    await app(scope, replay_receive, capture)
    return captured


def _kept_headers(start: Message) -> list[list[str]]:
    return [
        [k.decode("latin-1"), v.decode("latin-1")]
        for k, v in cast("Iterable[tuple[bytes, bytes]]", start.get("headers", ()))
        if k.lower() in _REPLAYED_HEADERS
    ]


def _joined_body(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


async def _replay(conn: Any, scope: Scope, send: Send, principal: str, key: str, fingerprint: bytes) -> None:
    row = await conn.fetchrow(
        "SELECT fingerprint, status_code, headers, body FROM idempotency_keys WHERE principal = $1 AND key = $2",
        principal,
        key,
    )
    if row is None or row["status_code"] is None:
        # Only if the row expired and was purged between our two statements: ask for a retry.
        await send_problem(send, scope, 409, "idempotency_key_in_flux", "retry the request")
        return
    if bytes(row["fingerprint"]) != fingerprint:
        await send_problem(
            send, scope, 422, "idempotency_key_reused", "this Idempotency-Key was used for a different request"
        )
        return
    body: bytes = row["body"]
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in row["headers"]]
    headers += [(b"content-length", str(len(body)).encode()), (b"idempotent-replayed", b"true")]
    await send({"type": "http.response.start", "status": row["status_code"], "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
