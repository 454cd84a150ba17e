"""Backend clients for the tests: real keys (cryptography), assertions signed as a SMART client
signs them (PyJWT), registered through the operator's own command code (spean.clients), and a
local HTTP server publishing a JWKS the way a client's own server would."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.config import Settings
from spean.clients import register_client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Key:
    private: Any
    alg: str
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def rsa(cls) -> Key:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS384")

    @classmethod
    def ec(cls) -> Key:
        return cls(ec.generate_private_key(ec.SECP384R1()), "ES384")

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        text = RSAAlgorithm.to_jwk(public) if self.alg == "RS384" else ECAlgorithm.to_jwk(public)
        jwk: dict[str, Any] = json.loads(text)
        return jwk | {"kid": self.kid, "alg": self.alg, "use": "sig"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}


@dataclass
class BackendClient:
    id: str
    key: Key

    def assertion(self, aud: str, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.id, "sub": self.id, "aud": aud, "exp": now + 240, "jti": uuid.uuid4().hex} | overrides
        return jwt.encode(claims, self.key.private, algorithm=self.key.alg, headers={"kid": self.key.kid})


def token_url(settings: Settings) -> str:
    return settings.public_base_url.rstrip("/") + "/auth/token"


def form(assertion: str, scope: str = "system/*.read") -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": scope,
    }


async def register(
    database_url: str, settings: Settings, tmp: Path, scopes: list[str], key: Key | None = None,
    jwks_url: str | None = None,
) -> BackendClient:  # fmt: skip
    key = key or Key.rsa()
    jwks_file = None
    if jwks_url is None:
        jwks_file = tmp / f"{key.kid}.json"
        jwks_file.write_text(json.dumps(key.jwks()))
    shown = json.loads(
        await register_client(
            database_url, settings, name=f"platform {key.kid[:6]}", scopes=scopes, jwks_file=jwks_file,
            jwks_url=jwks_url,
        )
    )  # fmt: skip
    return BackendClient(shown["client_id"], key)


async def access_token(
    client: AsyncTestClient[Litestar], settings: Settings, backend: BackendClient, scope: str = "system/*.read"
) -> str:
    response = await client.post(token_url(settings), data=form(backend.assertion(token_url(settings)), scope))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["scope"] == scope
    return str(body["access_token"])


@contextmanager
def jwks_server(jwks: dict[str, Any]) -> Iterator[tuple[str, list[int]]]:
    """(URL, hit counter) of a local server publishing `jwks` (mutable: a test may rotate keys)."""
    hits: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(1)
            body = json.dumps(jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", hits
    finally:
        server.shutdown()
        server.server_close()
