"""A local HTTP server speaking Twilio's REST wire format for sending messages, so tests drive the
real `twilio` SDK (its async client) end to end and read what Spean sent.

POST /2010-04-01/Accounts/{AccountSid}/Messages.json, form body (To, From or
MessagingServiceSid, Body, StatusCallback), HTTP Basic auth (AccountSid:AuthToken); the answer is
Twilio's Message JSON (201), or its error JSON {code, message, more_info, status}, which the SDK
raises as TwilioRestException. Failures can be scripted: the next n requests answer a status
(e.g. 503, or 429 with Retry-After), and numbers can be marked invalid (400, code 21211).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages\.json$")


@dataclass
class Received:
    account_sid: str
    form: dict[str, str]
    sid: str
    at: float = field(default_factory=time.monotonic)  # when it arrived (bench/channels times replies)


@dataclass
class TwilioServer:
    account_sid: str
    auth_token: str
    port: int = 0
    messages: list[Received] = field(default_factory=list)
    requests: int = 0
    invalid_numbers: set[str] = field(default_factory=set)
    listeners: list[Callable[[Received], None]] = field(default_factory=list)  # called per message taken
    _failures: list[tuple[int, int, str | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, count: int, status: int = 503, *, code: int = 20500, retry_after: str | None = None) -> None:
        with self._lock:
            self._failures.extend([(status, code, retry_after)] * count)

    def sent_to(self, phone: str) -> list[str]:
        with self._lock:
            return [m.form["Body"] for m in self.messages if m.form.get("To") == phone]

    async def latest_to(self, phone: str) -> str:
        """The latest SMS this server took for `phone`, once one has come (an app sends right
        after its transaction commits; if that hand-over failed, its ledger loop within seconds)."""
        for _ in range(300):
            if self.sent_to(phone):
                break
            await asyncio.sleep(0.05)
        sent = self.sent_to(phone)
        assert sent, f"no SMS reached {phone}"
        return sent[-1]

    def answer(self, path: str, authorization: str, raw: bytes) -> tuple[int, dict[str, object], dict[str, str]]:
        match = _PATH.match(path)
        if match is None:
            return 404, _error(20404, "The requested resource was not found", 404), {}
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if match["sid"] != self.account_sid or authorization != expected:
            return 401, _error(20003, "Authenticate", 401), {}
        form = {k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        with self._lock:
            self.requests += 1
            if self._failures:
                status, code, retry_after = self._failures.pop(0)
                return (
                    status,
                    _error(code, "scripted failure", status),
                    {"Retry-After": retry_after} if retry_after else {},
                )
        if not form.get("To") or not form.get("Body") or not (form.get("From") or form.get("MessagingServiceSid")):
            return 400, _error(21604, "A 'To' phone number, a 'From' and a 'Body' are required.", 400), {}
        if form["To"] in self.invalid_numbers:
            return 400, _error(21211, f"The 'To' number {form['To']} is not a valid phone number.", 400), {}
        sid = f"SM{next(self._ids):032x}"
        received = Received(match["sid"], form, sid)
        with self._lock:
            self.messages.append(received)
        for listener in self.listeners:
            listener(received)
        return 201, _message(sid, match["sid"], form), {}


def _error(code: int, message: str, status: int) -> dict[str, object]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _message(sid: str, account_sid: str, form: dict[str, str]) -> dict[str, object]:
    return {
        "sid": sid,
        "account_sid": account_sid,
        "to": form["To"],
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "body": form["Body"],
        "status": "queued",
        "num_segments": "1",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "date_created": "Thu, 03 Dec 2026 03:00:00 +0000",
        "date_updated": "Thu, 03 Dec 2026 03:00:00 +0000",
        "date_sent": None,
        "price": None,
        "error_code": None,
        "error_message": None,
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
        "subresource_uris": {},
    }


@contextmanager
def running(account_sid: str, auth_token: str) -> Iterator[TwilioServer]:
    twilio = TwilioServer(account_sid, auth_token)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body, headers = twilio.answer(self.path, self.headers.get("Authorization", ""), raw)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    twilio.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield twilio
    finally:
        server.shutdown()
        server.server_close()
