"""Public keys published by backend clients at a JWKS URL, fetched and cached per URL.

PyJWT's PyJWKClient does the fetching and the caching (the key set for `lifespan_s`, refetched
once when an assertion names a key id it does not hold, so a client may rotate its keys, but not
more often than every `cooldown_s`, so assertions with made-up key ids cannot make us hammer a
client's server); it is synchronous, so it runs in a thread."""

from __future__ import annotations

import asyncio

import jwt


class JwksUnavailable(Exception):
    """The URL did not answer with a usable key set."""


class JwksFetcher:
    def __init__(
        self, lifespan_s: int = 300, timeout_s: float = 5.0, max_urls: int = 1000, cooldown_s: float = 30.0
    ) -> None:
        self._lifespan = lifespan_s
        self._cooldown = cooldown_s
        self._timeout = timeout_s
        self._max = max_urls
        self._clients: dict[str, jwt.PyJWKClient] = {}

    def _client(self, url: str) -> jwt.PyJWKClient:
        client = self._clients.get(url)
        if client is None:
            if len(self._clients) >= self._max:
                self._clients.clear()
            client = jwt.PyJWKClient(
                url,
                cache_jwk_set=True,
                lifespan=self._lifespan,
                timeout=self._timeout,
                cooldown_duration=self._cooldown,
            )
            self._clients[url] = client
        return client

    async def keys(self, url: str, kid: str | None) -> list[jwt.PyJWK]:
        """The signing key named `kid`, or every signing key when the assertion names none."""
        client = self._client(url)
        try:
            if kid is not None:
                return [await asyncio.to_thread(client.get_signing_key, kid)]
            return await asyncio.to_thread(client.get_signing_keys)
        except jwt.PyJWKClientError as exc:
            raise JwksUnavailable(str(exc)) from None
