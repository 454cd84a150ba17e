"""ICE servers for a client: STUN, and TURN with time-limited credentials in coturn's shared
secret scheme (`use-auth-secret`): username "<expiry unix time>:<user>", password
base64(HMAC-SHA1(secret, username)). coturn checks them with the same secret; nothing is stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import msgspec

from infra.config import Settings


class IceServer(msgspec.Struct, omit_defaults=True):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServers(msgspec.Struct):
    ice_servers: list[IceServer]
    ttl: int


def turn_credentials(secret: str, user: str, ttl_s: int, now: float | None = None) -> tuple[str, str]:
    username = f"{int((time.time() if now is None else now) + ttl_s)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(*, stun_urls: list[str], turn_urls: list[str], turn_secret: str, user: str, ttl_s: int) -> IceServers:
    servers = [IceServer(urls=stun_urls)] if stun_urls else []
    if turn_urls and turn_secret:
        username, credential = turn_credentials(turn_secret, user, ttl_s)
        servers.append(IceServer(urls=turn_urls, username=username, credential=credential))
    return IceServers(ice_servers=servers, ttl=ttl_s)


def _split(urls: str) -> list[str]:
    return [u.strip() for u in urls.split(",") if u.strip()]


def ice_servers_for(settings: Settings, user: str) -> IceServers:
    """The deployment's STUN/TURN servers (SPEAN_STUN_URLS, SPEAN_TURN_URLS), credentials for `user`."""
    return ice_servers(
        stun_urls=_split(settings.stun_urls),
        turn_urls=_split(settings.turn_urls),
        turn_secret=settings.turn_secret,
        user=user,
        ttl_s=settings.turn_ttl_s,
    )
