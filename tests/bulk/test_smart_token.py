"""SMART Backend Services over HTTP: discovery, and the token endpoint accepting a properly
signed assertion and refusing each kind of bad one with the OAuth error a client acts on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from litestar import Litestar
from litestar.testing import AsyncTestClient

from domain.errors import InvalidInput
from infra.config import Settings
from infra.jwks import JwksFetcher
from spean.clients import jwks_from_file, list_clients, register_client, revoke_client
from tests.bulk.smart import BackendClient, Key, access_token, form, jwks_server, register, token_url

Client = AsyncTestClient[Litestar]


async def _refused(client: Client, settings: Settings, body: dict[str, str], status: int, error: str) -> str:
    response = await client.post(token_url(settings), data=body)
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == error
    return str(response.json()["error_description"])


async def test_discovery_names_the_token_endpoint_and_private_key_jwt(client: Client, settings: Settings) -> None:
    response = await client.get("/.well-known/smart-configuration")
    assert response.status_code == 200
    config = response.json()
    assert config["token_endpoint"] == token_url(settings)
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert config["grant_types_supported"] == ["client_credentials"]
    assert "client-confidential-asymmetric" in config["capabilities"]
    assert "system/*.read" in config["scopes_supported"]


async def test_capability_statement_declares_export_and_smart(client: Client, settings: Settings) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    rest = statement["rest"][0]
    assert {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"} in rest[
        "operation"
    ]
    by_type = {r["type"]: r for r in rest["resource"]}
    assert any(o["name"] == "export" and o["definition"].endswith("/patient-export")
               for o in by_type["Patient"]["operation"])  # fmt: skip
    assert any(o["definition"].endswith("/group-export") for o in by_type["Group"]["operation"])
    codes = [c["code"] for s in rest["security"]["service"] for c in s["coding"]]
    assert "SMART-on-FHIR" in codes
    uris = rest["security"]["extension"][0]
    assert uris["url"].endswith("/oauth-uris")
    assert uris["extension"] == [{"url": "token", "valueUri": token_url(settings)}]


async def test_signed_assertions_get_tokens_rs384_and_es384(
    client: Client, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    for key in (Key.rsa(), Key.ec()):
        backend = await register(database_url, settings, tmp_path, ["system/*.read"], key)
        token = await access_token(client, settings, backend, "system/Patient.read system/Observation.rs")
        assert token.count(".") == 2


async def test_each_bad_assertion_is_refused_with_its_oauth_error(
    client: Client, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    backend = await register(database_url, settings, tmp_path, ["system/Patient.read"])
    aud = token_url(settings)
    # Signed by a key the client never registered (same kid, as a thief would claim).
    forged = Key.rsa()
    forged.kid = backend.key.kid
    stolen = type(backend)(backend.id, forged).assertion(aud)
    assert "signature" in await _refused(client, settings, form(stolen, "system/Patient.read"), 401, "invalid_client")
    # Replayed: the same jti twice.
    once = backend.assertion(aud)
    assert (await client.post(aud, data=form(once, "system/Patient.read"))).status_code == 200
    assert "jti" in await _refused(client, settings, form(once, "system/Patient.read"), 401, "invalid_client")
    # Expired, too long-lived, wrong audience, unknown client.
    expired = backend.assertion(aud, exp=int(time.time()) - 120)
    assert "expired" in await _refused(client, settings, form(expired, "system/Patient.read"), 401, "invalid_client")
    long_lived = backend.assertion(aud, exp=int(time.time()) + 3600)
    await _refused(client, settings, form(long_lived, "system/Patient.read"), 401, "invalid_client")
    elsewhere = backend.assertion("https://other.example/token")
    assert "aud" in await _refused(client, settings, form(elsewhere, "system/Patient.read"), 401, "invalid_client")
    unknown = type(backend)("6f1c2b0e-8a55-4c3e-9d8e-2f6a7b1c0d99", backend.key)
    await _refused(client, settings, form(unknown.assertion(aud), "system/Patient.read"), 401, "invalid_client")
    # sub differs from iss.
    await _refused(client, settings, form(backend.assertion(aud, sub="someone"), "system/Patient.read"), 401,
                   "invalid_client")  # fmt: skip
    # A scope the client was not granted, a write scope, and no scope at all.
    await _refused(client, settings, form(backend.assertion(aud), "system/Observation.read"), 400, "invalid_scope")
    await _refused(client, settings, form(backend.assertion(aud), "system/Patient.write"), 400, "invalid_scope")
    await _refused(client, settings, form(backend.assertion(aud), ""), 400, "invalid_scope")
    # Not client_credentials, not a JWT assertion type, not a form.
    await _refused(client, settings, form(backend.assertion(aud)) | {"grant_type": "password"}, 400,
                   "unsupported_grant_type")  # fmt: skip
    await _refused(client, settings, form(backend.assertion(aud)) | {"client_assertion_type": "basic"}, 400,
                   "invalid_request")  # fmt: skip
    response = await client.post(aud, json=form(backend.assertion(aud)))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_revoked_client_gets_no_token(
    client: Client, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    backend = await register(database_url, settings, tmp_path, ["system/*.read"])
    await access_token(client, settings, backend)
    await revoke_client(database_url, settings, client_id=backend.id)
    assert backend.id in await list_clients(database_url, settings)
    await _refused(client, settings, form(backend.assertion(token_url(settings))), 401, "invalid_client")


async def test_keys_from_a_jwks_url_are_fetched_once_and_cached(
    client: Client, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    # The app refetches for an unknown kid at most every 30 s; this test rotates at once.
    client.app.state.jwks_fetcher = JwksFetcher(settings.smart_jwks_cache_s, cooldown_s=0)
    key = Key.ec()
    published = key.jwks()
    with jwks_server(published) as (url, hits):
        backend = await register(database_url, settings, tmp_path, ["system/*.read"], key, jwks_url=url)
        await access_token(client, settings, backend)
        await access_token(client, settings, backend)
        assert len(hits) == 1  # the second token used the cached key set
        # The client rotates its key: an assertion naming the new kid makes us fetch again.
        rotated = Key.ec()
        published["keys"] = [rotated.jwk()]
        backend.key = rotated
        await access_token(client, settings, backend)
        assert len(hits) == 2
    # Its server is gone (and the key set not cached for a kid never seen): invalid_client, not a 500.
    backend.key = Key.ec()
    await _refused(client, settings, form(backend.assertion(token_url(settings))), 401, "invalid_client")


async def test_a_pem_public_key_registers_through_the_command(
    client: Client, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    """`spean admin register-client --jwks-file key.pem`: the operator hands over a PEM file."""
    key = Key.rsa()
    pem = tmp_path / "platform-public.pem"
    pem.write_bytes(key.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    registered = jwks_from_file(pem)["keys"][0]
    assert registered["kty"] == "RSA"
    assert registered["alg"] == "RS384"
    assert "d" not in registered
    key.kid = registered["kid"]
    shown = json.loads(
        await register_client(
            database_url, settings, name="from pem", scopes=["system/Patient.rs"], jwks_file=pem, jwks_url=None
        )
    )
    await access_token(client, settings, BackendClient(shown["client_id"], key), "system/Patient.rs")
    private = tmp_path / "private.json"
    private.write_text(json.dumps(Key.rsa().jwk() | {"d": "secret"}))
    with pytest.raises(InvalidInput, match="private key"):
        jwks_from_file(private)
