"""REDIS_URL's three forms, and the client each one gives."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from infra import redis_client
from infra.config import ConfigError, load_settings
from infra.redis_client import RedisUrl, RedisUrlError, parse


def test_one_server_is_the_url_as_given() -> None:
    assert parse("redis://127.0.0.1:6379/15") == RedisUrl("single", "redis://127.0.0.1:6379/15")
    assert parse("rediss://u:p@cache:6380/0").mode == "single"


def test_sentinel_names_the_sentinels_the_master_and_the_database() -> None:
    spec = parse("redis+sentinel://app:s%40cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/3?sentinel_password=x")
    assert spec.mode == "sentinel"
    assert spec.nodes == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert (spec.service, spec.db, spec.username, spec.password) == ("mymaster", 3, "app", "s@cret")
    assert spec.sentinel_password == "x"
    assert not spec.tls
    assert parse("rediss+sentinel://s1/mymaster").tls


def test_a_cluster_names_some_of_its_nodes() -> None:
    spec = parse("redis+cluster://:pw@n1:7000,n2:7001,n3")
    assert spec.mode == "cluster"
    assert spec.nodes == (("n1", 7000), ("n2", 7001), ("n3", 6379))
    assert (spec.username, spec.password) == (None, "pw")
    assert parse("redis+cluster://n1:7000/0").nodes == (("n1", 7000),)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("memcached://x", "scheme"),
        ("redis+sentinel://s1:26379", "master name"),
        ("redis+sentinel://s1:26379/m/1/2", "master name"),
        ("redis+sentinel://s1:26379/m/x", "not a number"),
        ("redis+cluster://n1:7000/2", "database 0 only"),
        ("redis+cluster:///", "no host"),
        ("redis+cluster://n1:port", "host:port"),
    ],
)
def test_a_bad_url_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(RedisUrlError, match=says):
        parse(url)
    with pytest.raises(ConfigError, match=says):
        load_settings({"REDIS_URL": url}, env="test")


async def test_each_form_gives_its_client() -> None:
    """No connection is made until first use, so the servers need not exist here."""
    single = redis_client.connect("redis://127.0.0.1:1/0")
    sentinel = redis_client.connect("redis+sentinel://127.0.0.1:1/mymaster/2")
    cluster = redis_client.connect("redis+cluster://127.0.0.1:1,127.0.0.1:2")
    assert isinstance(single, Redis)
    assert isinstance(sentinel, Redis)
    assert isinstance(cluster, RedisCluster)
    assert not redis_client.is_cluster(single)
    assert not redis_client.is_cluster(sentinel)
    assert redis_client.is_cluster(cluster)
    for client in (single, sentinel, cluster):
        await client.aclose()
