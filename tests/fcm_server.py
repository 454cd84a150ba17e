"""A local stand-in for Google: the OAuth JWT-bearer token exchange and the FCM HTTP v1 send API,
as firebase-admin calls them. It checks what a real FCM checks that matters here (a signed
assertion for the token, a bearer token on each send, one token per message) and records every
message it received. How it answers is chosen by the registration token:

  dead-…      404 UNREGISTERED          bad-…    400 INVALID_ARGUMENT
  deny-…      403 PERMISSION_DENIED     down-…   503 UNAVAILABLE, always
  flaky5-…    503 for the first 5 sends of that token, then accepted
  (any other) accepted: {"name": "projects/<p>/messages/<n>"}
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

_SEND = re.compile(r"^/v1/projects/([^/]+)/messages:send$")
_ACCESS_TOKEN = "local-fcm-access-token"


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the SDK opens up to a batch's worth of connections at once
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # wrk closes its connections mid-request when its run ends: a reset peer is not a fault
        # of the server under test, and its traceback would bury the bench's table.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FcmServer:
    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.received: list[dict[str, Any]] = []  # accepted messages
        self.arrivals: list[float] = []  # wall-clock time each accepted message arrived (benchmarks)
        self.attempts: dict[str, int] = {}  # sends per token, accepted or not
        self.token_exchanges = 0
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._http = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> FcmServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def service_account(self, folder: Path, project: str = "spean-test") -> Path:
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        path = folder / "service-account.json"
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": project,
                    "private_key_id": "local",
                    "private_key": pem,
                    "client_email": f"spean@{project}.iam.gserviceaccount.com",
                    "client_id": "1",
                    "token_uri": f"{self.base_url}/token",
                }
            )
        )
        return path

    def to(self, token: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.received if m.get("token") == token]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Google's front end: the SDK reuses connections

            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/token":
                    self._token(body)
                elif (match := _SEND.match(self.path)) is not None:
                    self._send(match.group(1), body)
                else:
                    self._answer(404, {"error": {"code": 404, "message": "no such path", "status": "NOT_FOUND"}})

            def _token(self, body: bytes) -> None:
                form = urllib.parse.parse_qs(body.decode())
                assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
                claims = jwt.decode(
                    form["assertion"][0],
                    server._key.public_key(),
                    algorithms=["RS256"],
                    audience="https://oauth2.googleapis.com/token",  # google-auth's, whatever the token_uri
                )
                assert "https://www.googleapis.com/auth/cloud-platform" in claims["scope"].split()
                with server._lock:
                    server.token_exchanges += 1
                self._answer(200, {"access_token": _ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"})

            def _send(self, project: str, body: bytes) -> None:
                if self.headers.get("Authorization") != f"Bearer {_ACCESS_TOKEN}":
                    self._error(401, "UNAUTHENTICATED", None)
                    return
                message = json.loads(body)["message"]
                token = message["token"]
                with server._lock:
                    tries = server.attempts[token] = server.attempts.get(token, 0) + 1
                if server.delay_s:
                    time.sleep(server.delay_s)
                if token.startswith("dead-"):
                    self._error(404, "NOT_FOUND", "UNREGISTERED")
                elif token.startswith("bad-"):
                    self._error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
                elif token.startswith("deny-"):
                    self._error(403, "PERMISSION_DENIED", None)
                elif token.startswith("down-") or (token.startswith("flaky5-") and tries <= 5):
                    self._error(503, "UNAVAILABLE", "UNAVAILABLE", retry_after="0")
                else:
                    with server._lock:
                        server.received.append(message)
                        server.arrivals.append(time.time())
                    self._answer(200, {"name": f"projects/{project}/messages/{next(server._ids)}"})

            def _error(self, code: int, status: str, fcm_code: str | None, retry_after: str | None = None) -> None:
                error: dict[str, Any] = {"code": code, "message": status.lower(), "status": status}
                if fcm_code:
                    error["details"] = [
                        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}
                    ]
                self._answer(code, {"error": error}, {"Retry-After": retry_after} if retry_after else {})

            def _answer(self, code: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(document).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler
