"""One database transaction per request, and Idempotency-Key on POST.

The transaction opens before the handler runs and commits after it answered 2xx/3xx, before the
answer leaves; any other answer rolls it back. Handlers (through the `conn` dependency) and the
audit trail write in it, so an act and its record commit together or not at all.

Idempotency: a phone that lost the answer retries with the same key and gets the first answer.
The key is claimed, the handler's writes are made and the answer is stored in that ONE
transaction, so a retry never sees a half-done request, and a concurrent duplicate waits on the
key's row until the first commits, then replays it. Only successes are kept: an error rolls
everything back, so a retry runs again. The same key with a different body is a 422.

Races: a transaction that loses to a concurrent one in a way PostgreSQL cannot queue (deadlock
40P01, serialization failure 40001) is rolled back and the WHOLE request runs again here, with
the same body and key, a few times at most with short random pauses; every route passes here, so
none answers such a race with a 500. If it loses every time the answer is a 503 with Retry-After.
The key is claimed inside the transaction that is retried, so a retry claims it afresh.

Late claim (routes marked LATE_KEY, whose every effect is in the database transaction): the key
is not claimed before the handler but written once, whole, after it answered, in the same
transaction: one statement instead of two on the hottest writes. Guarantees are the same: a
concurrent duplicate that also succeeds waits on the key's row at that insert, finds it taken,
rolls all its writes back and runs again the classic way (which replays the first answer); one
that fails (e.g. met the first one's booking: it could only see it once committed) asks the
classic claim, in a transaction of its own, whether an answer is kept, and replays it if so.
Routes with effects outside the database (Redis, sends) keep the classic claim, so a duplicate
waits before doing anything.

One statement (routes marked ONE_STATEMENT: the booking, the hottest write): the handler only
reads, in no transaction (each read is its own snapshot, as under READ COMMITTED inside one), and
hands over the ONE statement that makes its change (`finish_with`, an infra.db.Statement). That
statement runs once the answer is rendered, alone, in its own implicit transaction, with the key
claimed inside it (its gate): the change, its audit and outbox rows and the kept answer commit
together or not at all, in two round trips where BEGIN, read, write, key, COMMIT took five. A key
found taken there writes nothing, and the request runs again the classic way (as above). If the
database refuses the statement (a conflict, a lost race, an outage), the rendered answer is
dropped and the route's exception handling answers instead, exactly as if the handler had raised
(api.errors, the one mapper; a lost race runs the request again, as below). A handler that
answers 2xx without a statement wrote nothing, and its key is claimed with its answer alone.

One read (routes marked ONE_READ: record reads, free slots, the sync pull): the handler writes in
at most ONE statement, which reads and, where the read is audited, audits itself
(domain.record.reads and the sync page insert their audit events in the statement that reads the
rows), so it runs in that statement's own implicit transaction: the read and its audit commit
together or not at all, without the BEGIN and COMMIT round trips that were two thirds of such a
request's database traffic. Reads before it are snapshots of their own (the sync horizon must be
one, read before the page). Nothing else writes: a refusal inserts nothing and is audited apart;
an answer that fails after the statement is at worst audited without having left. Only without
an Idempotency-Key (a GET); with one, the classic claim in a transaction.

On demand (routes marked ON_DEMAND: FHIR searches): whether a request runs one statement or
several is known only once the handler has read it (a FHIR search of one patient's record with
no _include is one statement, most others are several). The transaction begins when the handler
asks (`begin`), before its first statement; a handler that never asks runs its one statement
alone, as a ONE_READ route does. Once begun, it commits or rolls back as any other.

Outages: when PostgreSQL is away (refused or dropped connections, a shutdown, a rollback or
release that meets the dead connection), nothing has been sent yet, so the answer is a 503 with
Retry-After, never a bare 500, and the half-dead connection is terminated rather than pooled.
Whether a cut-off COMMIT landed is unknown; a retry with the same Idempotency-Key finds out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple, Protocol, cast

import asyncpg
import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPRequestEvent, Message, Receive, ReceiveMessage, Scope, Send
from litestar.utils.scope.state import ScopeState

from api import reads
from api.asgi_util import header, problem_messages, send_problem
from api.errors import RETRY_SCOPE_KEY
from domain import constraints
from domain.errors import Unavailable
from infra import outage
from infra.db import Statement

log = structlog.get_logger(__name__)

SCOPE_CONN = "spean.conn"
SCOPE_AFTER_COMMIT = "spean.after_commit"  # callables run once the request's transaction committed
SCOPE_AFTER_ROLLBACK = "spean.after_rollback"  # callables run once the request was refused
SCOPE_FINAL = "spean.final"  # the attempt's _Final: the statement a ONE_STATEMENT route hands over
NO_TRANSACTION = {"transaction": False}  # route opt for handlers that need no database
LATE_KEY = {"idempotency": "late"}  # route opt: claim the Idempotency-Key with the answer (see above)
# Route opt: the handler only reads and hands its one write to `finish_with` (see above).
ONE_STATEMENT = {"idempotency": "late", "transaction": "one_statement"}
# Route opt: the handler's only database work is one statement, its own transaction (see above).
ONE_READ = {"transaction": "one_read"}
# Route opt: the handler begins the transaction itself when it will run more than one statement.
ON_DEMAND = {"transaction": "on_demand"}
SCOPE_BEGIN = "spean.begin"  # an ON_DEMAND route's `begin`
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_REPLAYED_HEADERS = {b"content-type", b"location", b"etag"}
MAX_BODY = 1_048_576
MAX_ATTEMPTS = 4  # a request that lost a race runs at most this often in all
BACKOFF_S = 0.01  # the pause before retry n is random in [0, BACKOFF_S * 2**n)


class _RollBack(Exception):
    """Leave the transaction without committing: the handler answered with an error."""


class _Duplicate(Exception):
    """Late claim: the key was taken by a concurrent request; roll back and run the classic way."""


class _Final:
    """The statement a ONE_STATEMENT route hands over, and what running it found."""

    __slots__ = ("claim", "claimed", "statement", "taken")

    def __init__(self, claim: tuple[str, str, bytes, int] | None) -> None:
        self.claim = claim  # (principal, key, fingerprint, ttl_s): the gate claims the key
        self.statement: Statement | None = None
        self.claimed = False  # the key was claimed with the statement
        self.taken = False  # ...or found taken: nothing was written

    async def run(self, conn: Any, answer: tuple[int, list[list[str]], bytes]) -> None:
        statement, self.statement = self.statement, None
        assert statement is not None
        if self.claim is None:
            await statement.run(conn)
            return
        principal, key, fingerprint, ttl_s = self.claim
        args = _claim_args(principal, key, fingerprint, ttl_s, answer)
        self.claimed = await statement.run(conn, _CLAIM, args)
        self.taken = not self.claimed


class _OnDemand:
    """The request's transaction, begun only if the handler asks; then settled as
    `conn.transaction()` would be: committed when the block ends normally, else rolled back."""

    __slots__ = ("conn", "transaction")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.transaction: Any = None

    async def begin(self) -> None:
        if self.transaction is None:
            self.transaction = self.conn.transaction()
            await self.transaction.start()

    async def __aenter__(self) -> _OnDemand:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.transaction is not None:
            await self.transaction.__aexit__(*exc_info)


class TransactionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        if scope["type"] != ScopeType.HTTP or (handler is not None and not handler.opt.get("transaction", True)):
            await self.app(scope, receive, send)
            return
        key = header(scope, b"idempotency-key") if scope.get("method") == "POST" else None
        body: bytes | None = None
        if key is not None:
            if not _KEY.match(key):
                await send_problem(
                    send, scope, 400, "invalid_idempotency_key", "Idempotency-Key is 1 to 255 visible ASCII characters"
                )
                return
            body = await _read_body(receive)
            if body is None:
                await send_problem(send, scope, 413, "payload_too_large", f"the body exceeds {MAX_BODY} bytes")
                return
            limits = getattr(handler, "resolve_request_max_body_size", None)  # HTTP route handlers'
            if limits is not None and ((limit := limits()) is None or len(body) <= limit):
                # Read whole already: the handler's request takes it from here rather than
                # streaming it again through the replaying receive (a larger one still is, and
                # meets the route's limit there).
                ScopeState.from_scope(scope).body = body
        if scope["app"].state.migrations_pending:
            # Started while PostgreSQL was away: the schema is brought up to date in the background.
            await _send_unavailable(send, scope, outage.POSTGRES)
            return
        late = key is not None and handler is not None and handler.opt.get("idempotency") == "late"
        request = _Request(scope, _ReplayableBody(receive, body), key)
        attempt, ran = 1, False
        while True:
            try:
                messages = await self._attempt(request, fresh=not ran, late=late)
                ran = True
                if late and messages is not None and not _succeeded(messages) and not scope.get(RETRY_SCOPE_KEY):
                    messages = await _kept_answer(request) or messages
                if messages is not None and _succeeded(messages) and not scope.get(RETRY_SCOPE_KEY):
                    await reads.write_kept_audit(scope)  # a replica-served read's audit, on the primary
            except _Duplicate:
                ran, late = True, False  # the same attempt again, claiming first (it replays the kept answer)
                scope.pop(RETRY_SCOPE_KEY, None)  # type: ignore[misc]
                continue
            except reads.ReplicaFailed:
                ran = True  # nothing was sent: the same request again, on the primary
                continue
            except Exception as exc:
                if (dependency := outage.unavailable(exc)) is None:
                    raise
                dependency.down(exc)  # logged once per outage
                await _send_unavailable(send, scope, dependency)
                return
            outage.POSTGRES.up()
            if (messages is not None and not scope.get(RETRY_SCOPE_KEY)) or attempt == MAX_ATTEMPTS:
                break
            # Lost a race (deadlock, serialization failure): everything was rolled back, so
            # the request runs again whole, same body, same key, after a short random pause
            # that lets the winner commit and keeps the losers from meeting again in step.
            log.info("request_retried", attempt=attempt, path=scope.get("path"))
            await asyncio.sleep(random.uniform(0, BACKOFF_S * 2**attempt))  # noqa: S311 - jitter, not secrecy
            attempt += 1
        if messages is None:  # lost at commit every time
            messages = problem_messages(
                scope, 503, "concurrent_update", "the request met a concurrent one: send it again", retry_after_s=1
            )
        if not _succeeded(messages):
            # Refused, and settled so (a late key's kept answer would have replaced the refusal):
            # what must outlive the rolled-back transaction goes now, before the answer leaves.
            failed: list[Callable[[], Awaitable[None]]] = scope.get(SCOPE_AFTER_ROLLBACK, [])  # type: ignore[assignment]
            try:
                for callback in failed:
                    await callback()
            except Exception as exc:
                if (dependency := outage.unavailable(exc)) is None:
                    raise
                dependency.down(exc)
                await _send_unavailable(send, scope, dependency)
                return
        for message in messages:
            await send(message)
        if _succeeded(messages):
            # Committed: what must leave only after commit (SMS, api.transaction.after_commit)
            # goes now. A background task would not do: it runs inside the app, before the commit.
            callbacks: list[Callable[[], Awaitable[None]]] = scope.get(SCOPE_AFTER_COMMIT, [])  # type: ignore[assignment]
            for callback in callbacks:
                try:
                    await callback()
                except Exception as exc:
                    if (dependency := outage.unavailable(exc)) is None:
                        log.exception("after_commit_failed")
                    else:
                        dependency.down(exc)  # logged once per outage

    async def _attempt(self, request: _Request, *, fresh: bool, late: bool) -> list[Message] | None:
        """One run of the request in one transaction: the answer to send, or None if the commit
        itself lost a race (then nothing was written)."""
        scope = request.scope
        scope.pop(RETRY_SCOPE_KEY, None)  # type: ignore[misc]
        scope[SCOPE_AFTER_COMMIT] = []  # type: ignore[literal-required]  # a rolled-back attempt's go with it
        scope[SCOPE_AFTER_ROLLBACK] = []  # type: ignore[literal-required]
        if not fresh:  # the framework's own exception handling must not think the answer has left
            ScopeState.from_scope(scope).response_started = False
        principal = _principal_of(scope)
        state = scope["app"].state
        ttl_s = state.settings.idempotency_ttl_s
        handler = scope.get("route_handler")
        one_statement = (
            handler is not None and handler.opt.get("transaction") == "one_statement" and (request.key is None or late)
        )
        one_read = handler is not None and handler.opt.get("transaction") == "one_read" and request.key is None
        captured: list[Message] = []
        async with reads.connection(scope) as conn:  # the primary's, or a replica's (api.reads)
            try:
                settled: contextlib.AbstractAsyncContextManager[Any]
                if one_statement or one_read:
                    settled = contextlib.nullcontext()
                elif handler is not None and handler.opt.get("transaction") == "on_demand" and request.key is None:
                    settled = _OnDemand(conn)
                    scope[SCOPE_BEGIN] = settled.begin  # type: ignore[literal-required]
                else:
                    settled = conn.transaction()
                async with settled:
                    fingerprint = b""
                    if request.key is not None:
                        fingerprint = _fingerprint(scope, request.body.complete)
                        if not late and not await _claim(conn, principal, request.key, fingerprint, ttl_s):
                            return await _replay(conn, scope, principal, request.key, fingerprint)
                    claim = (principal, request.key, fingerprint, ttl_s) if one_statement and request.key else None
                    final = _Final(claim)
                    scope[SCOPE_FINAL] = final  # type: ignore[literal-required]
                    scope[SCOPE_CONN] = conn  # type: ignore[literal-required]
                    captured = await _run(self.app, scope, request.body.receiver(), final, conn)
                    status = cast("int", captured[0].get("status", 500)) if captured else 500
                    if not 200 <= status < 400:
                        raise _RollBack
                    if final.taken:
                        raise _Duplicate
                    if request.key is not None and late:
                        if not final.claimed:  # else the key went with the answer in the one statement
                            kept = (status, _kept_headers(captured[0]), _joined_body(captured))
                            if not await _claim(conn, principal, request.key, fingerprint, ttl_s, kept):
                                raise _Duplicate
                    elif request.key is not None:
                        await conn.execute(
                            "UPDATE idempotency_keys SET status_code = $3, headers = $4, body = $5 "
                            "WHERE principal = $1 AND key = $2",
                            principal,
                            request.key,
                            status,
                            _kept_headers(captured[0]),
                            _joined_body(captured),
                        )
            except _RollBack:
                pass
            except _Duplicate:
                raise
            except Exception as exc:
                # A race lost in the commit or the key's statements (the handler's own are mapped
                # by api.errors): run again.
                if isinstance(exc, asyncpg.PostgresError) and isinstance(constraints.domain_error(exc), Unavailable):
                    return None
                if outage.unavailable(exc) is not None:
                    # Half-dead: never hand it to the next request (it may be gone already).
                    with contextlib.suppress(Exception):
                        conn.terminate()
                raise
            finally:
                scope.pop(SCOPE_CONN, None)  # type: ignore[misc]
                scope.pop(SCOPE_FINAL, None)  # type: ignore[misc]
                scope.pop(SCOPE_BEGIN, None)  # type: ignore[misc]
        return captured


class _ReplayableBody:
    """The request body, kept as the app reads it so that a retry can read it again."""

    def __init__(self, receive: Receive, complete: bytes | None) -> None:
        self._receive = receive
        self._seen: list[ReceiveMessage] = []
        self.complete = complete or b""  # read up front (Idempotency-Key requests), or b""
        if complete is not None:
            self._seen.append(HTTPRequestEvent(type="http.request", body=complete, more_body=False))

    def receiver(self) -> Receive:
        replay = list(self._seen)

        async def receive() -> ReceiveMessage:
            if replay:
                return replay.pop(0)
            message = await self._receive()
            if message["type"] == "http.request":
                self._seen.append(message)
            return message

        return receive


class _Request(NamedTuple):
    scope: Scope
    body: _ReplayableBody
    key: str | None


def _fingerprint(scope: Scope, body: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in (b"POST", scope["path"].encode(), scope.get("query_string", b""), body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.digest()


async def _claim(
    conn: Any,
    principal: str,
    key: str,
    fingerprint: bytes,
    ttl_s: int,
    answer: tuple[int, list[list[str]], bytes] | None = None,
) -> bool:
    """Take the key, or find it taken (after waiting for a concurrent holder to finish). With
    `answer` (late claim) the row is written whole: status, headers and body at once."""
    claimed = await conn.fetchval(_CLAIM, *_claim_args(principal, key, fingerprint, ttl_s, answer))
    return claimed is not None


# One row if the key was taken now (new, or expired and taken over), none if another holds it.
_CLAIM = """INSERT INTO idempotency_keys (principal, key, fingerprint, expires_at, status_code, headers, body)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (principal, key) DO UPDATE
              SET fingerprint = EXCLUDED.fingerprint, status_code = EXCLUDED.status_code,
                  headers = EXCLUDED.headers, body = EXCLUDED.body,
                  created_at = now(), expires_at = EXCLUDED.expires_at
              WHERE idempotency_keys.expires_at < now()
           RETURNING 1"""


def _claim_args(
    principal: str, key: str, fingerprint: bytes, ttl_s: int, answer: tuple[int, list[list[str]], bytes] | None
) -> tuple[object, ...]:
    status, headers, body = answer if answer is not None else (None, None, None)
    return principal, key, fingerprint, datetime.now(UTC) + timedelta(seconds=ttl_s), status, headers, body


async def _kept_answer(request: _Request) -> list[Message] | None:
    """Late claim, after an error: the answer kept for this key, if a request with it succeeded
    (waiting for one still in flight), else None. Claims in a transaction of its own that is
    always rolled back: errors are not kept."""
    assert request.key is not None
    scope = request.scope
    principal = _principal_of(scope)
    fingerprint = _fingerprint(scope, request.body.complete)
    state = scope["app"].state
    async with state.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            if await _claim(conn, principal, request.key, fingerprint, state.settings.idempotency_ttl_s):
                return None
            # The answer is the kept one (or a 422 for another body), as if this run never happened.
            scope[SCOPE_AFTER_COMMIT] = []  # type: ignore[literal-required]  # the failed run's go with it
            scope[SCOPE_AFTER_ROLLBACK] = []  # type: ignore[literal-required]
            return await _replay(conn, scope, principal, request.key, fingerprint)
        finally:
            await transaction.rollback()


def _principal_of(scope: Scope) -> str:
    user = scope.get("user")
    return str(user.user_id) if user is not None else "anonymous"


def _succeeded(messages: list[Message] | None) -> bool:
    return bool(messages) and 200 <= cast("int", messages[0].get("status", 500)) < 400  # type: ignore[index]


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


async def _run(app: ASGIApp, scope: Scope, receive: Receive, final: _Final, conn: Any) -> list[Message]:
    """Run the app, holding its answer back until the transaction is settled; a statement handed
    over with `finish_with` runs once a successful answer is complete, before it is kept."""
    captured: list[Message] = []

    async def capture(message: Message) -> None:
        if (
            final.statement is not None
            and message["type"] == "http.response.body"
            and not message.get("more_body", False)
            and _succeeded(captured)
        ):
            status = cast("int", captured[0].get("status", 500))
            try:
                await final.run(conn, (status, _kept_headers(captured[0]), _joined_body([*captured, message])))
            except Exception as exc:
                # Refused or cut off: the route's exception handling answers instead, as if the
                # handler had raised (the framework must not think the answer has left).
                captured.clear()
                ScopeState.from_scope(scope).response_started = False
                if outage.unavailable(exc) is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()  # half-dead: never handed to the next request
                raise
        captured.append(message)

    await app(scope, receive, capture)
    return captured


def _kept_headers(start: Message) -> list[list[str]]:
    return [
        [k.decode("latin-1"), v.decode("latin-1")]
        for k, v in cast("Iterable[tuple[bytes, bytes]]", start.get("headers", ()))
        if k.lower() in _REPLAYED_HEADERS
    ]


def _joined_body(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


async def _replay(conn: Any, scope: Scope, principal: str, key: str, fingerprint: bytes) -> list[Message]:
    row = await conn.fetchrow(
        "SELECT fingerprint, status_code, headers, body FROM idempotency_keys WHERE principal = $1 AND key = $2",
        principal,
        key,
    )
    if row is None or row["status_code"] is None:
        # Only if the row expired and was purged between our two statements: ask for a retry.
        return problem_messages(scope, 409, "idempotency_key_in_flux", "retry the request")
    if bytes(row["fingerprint"]) != fingerprint:
        return problem_messages(
            scope, 422, "idempotency_key_reused", "this Idempotency-Key was used for a different request"
        )
    body: bytes = row["body"]
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in row["headers"]]
    headers += [(b"content-length", str(len(body)).encode()), (b"idempotent-replayed", b"true")]
    return [
        {"type": "http.response.start", "status": row["status_code"], "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    ]


async def _send_unavailable(send: Send, scope: Scope, dependency: outage.Dependency) -> None:
    retry_after = str(outage.RETRY_AFTER_S).encode()
    detail = f"{dependency.name} is unavailable for a moment; retry after {outage.RETRY_AFTER_S} s"
    await send_problem(send, scope, 503, dependency.code, detail, [(b"retry-after", retry_after)])


def finish_with(scope: Scope, statement: Statement) -> None:
    """A ONE_STATEMENT route's write: run after its answer is rendered (see above)."""
    final: _Final | None = scope.get(SCOPE_FINAL)  # type: ignore[assignment]
    if final is None:
        raise RuntimeError("the route opted out of the request transaction")
    if final.statement is not None:
        raise RuntimeError("a request hands over one statement")
    final.statement = statement


def after_rollback(scope: Scope, callback: Callable[[], Awaitable[None]]) -> None:
    """Run `callback` once this request is answered with an error and its transaction rolled back,
    before the answer leaves; never if it succeeded, nor if its Idempotency-Key replays a kept
    answer instead (a late key: the refusal met the effects of the request's own earlier run)."""
    scope.setdefault(SCOPE_AFTER_ROLLBACK, []).append(callback)  # type: ignore[misc]


async def begin(scope: Scope) -> None:
    """Begin the request's transaction now, if its route is ON_DEMAND (else it is already open, or
    the route runs in none): call it before the first statement of a request that runs several."""
    start: Callable[[], Awaitable[None]] | None = scope.get(SCOPE_BEGIN)  # type: ignore[assignment]
    if start is not None:
        await start()


def after_commit(scope: Scope, callback: Callable[[], Awaitable[None]]) -> None:
    """Run `callback` after this request's transaction commits (never if it rolls back)."""
    scope.setdefault(SCOPE_AFTER_COMMIT, []).append(callback)  # type: ignore[misc]


class _Sender(Protocol):
    async def deliver(self, ids: Iterable[uuid.UUID]) -> None: ...


def send_after_commit(scope: Scope, outbox: _Sender, sms_id: uuid.UUID | None) -> None:
    """The SMS this request queued in the outbox leaves as soon as the transaction commits,
    rather than on the outbox loop's next pass; nothing to do where none was queued."""
    if sms_id is not None:
        after_commit(scope, partial(outbox.deliver, [sms_id]))
