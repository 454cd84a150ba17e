"""Spean on a Redis Cluster of three masters, each with a replica, all real redis-server processes.

A consultation runs across two `spean serve` processes (the specialist on one, the patient on
the other), its signalling relayed through the node holding the room's hash slot (sharded pub/sub).
Then that node is killed (SIGKILL): the cluster promotes its replica, and the call goes on. What
is guaranteed: peers whose socket was closed meanwhile were told 1013 (try again) and resume
their place (same peer, still admitted) with its messages replayed from the room's log, the room
state written before the failure is there (it had replicated: Redis replication is asynchronous,
so a write in the last instant before the failure may be lost), and relaying resumes in both
directions once the replica is promoted. Messages published during the failover itself may be
lost (pub/sub is at-most-once; the consult page recovers with an ICE restart).

The other Redis users (sign-in codes and their rate limits, USSD sessions, SMS questions and the
hourly SMS budget, read-your-writes markers) are exercised on the same cluster; every multi-key
operation must stay within one slot, or Redis refuses it (CROSSSLOT).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio.cluster import RedisCluster

from domain.errors import RateLimited, Unauthenticated
from domain.identity.otp import OtpPolicy, OtpService
from infra import redis_client, redis_keys
from infra.config import Settings
from infra.embedded import free_port
from realtime import bus as room_bus
from realtime.rooms import Rooms
from sms import conversation
from sms.outbox import SmsOutbox, budget_key, policy_from
from sms.sender import LogSmsSender
from sms.ussd.session import Session, SessionStore
from tests.factory import Consultation, Factory
from tests.fault.servers import wait_until
from tests.live import server_env, serving
from tests.realtime.test_rolling_restart import Peer
from tests.scale.redis_servers import Cluster, own_cluster
from tests.scale.servers import until


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with own_cluster(range(7120, 7126)) as server:
        yield server


@pytest.fixture
async def cluster_client(cluster: Cluster) -> AsyncIterator[redis_client.RedisClient]:
    redis = redis_client.connect(cluster.url)
    yield redis
    await redis.aclose()


@dataclass
class TwoProcesses:
    urls: list[str]  # host:port of each
    procs: list[subprocess.Popen[bytes]]


@pytest.fixture
def two_processes(settings: Settings, cluster: Cluster, tmp_path: Path) -> Iterator[TwoProcesses]:
    env = server_env(settings, tmp_path, REDIS_URL=cluster.url, SPEAN_RTC_GRACE="60")
    ports = [free_port(), free_port()]
    with serving(env, ports, tmp_path, "--no-migrate") as procs:
        yield TwoProcesses([f"127.0.0.1:{p}" for p in ports], procs)


@pytest.fixture
async def consultation(factory: Factory) -> Consultation:
    return await factory.consultation()


async def _relayed(sender: Peer, receiver: Peer, text: str, within_s: float = 5) -> bool:
    await sender.send(type="chat", text=text)
    try:
        async with asyncio.timeout(within_s):
            while (await receiver.next("chat", within_s))["text"] != text:
                pass
    except TimeoutError:
        return False
    return True


async def test_a_call_across_two_processes_survives_the_failover_of_its_rooms_node(
    cluster: Cluster, two_processes: TwoProcesses, consultation: Consultation
) -> None:
    c = consultation
    a, b = two_processes.urls
    specialist = Peer(a, c.specialist.token, str(c.appointment_id))  # on process A
    patient = Peer(b, c.patient.token, str(c.appointment_id))  # on process B
    await specialist.join()
    await patient.join()
    readers = [asyncio.create_task(p.run()) for p in (specialist, patient)]
    try:
        await specialist.send(type="admit", peer=patient.ready["peer"])
        await patient.next("admitted")
        # Signalling crosses the processes both ways: an offer for the patient, its answer back.
        await specialist.send(type="offer", to=patient.ready["peer"], sdp="v=0 offer")
        assert (await patient.next("offer"))["sdp"] == "v=0 offer"
        await patient.send(type="answer", to=specialist.ready["peer"], sdp="v=0 answer")
        assert (await specialist.next("answer"))["sdp"] == "v=0 answer"
        assert await _relayed(specialist, patient, "before the failover")

        room = str(c.appointment_id)
        node = cluster.master_of(redis_keys.rtc_peers(room))
        assert node is cluster.master_of(redis_keys.rtc_live(room))  # the room's channel is on its node
        # The replica must have the room before its master dies (replication is asynchronous: what
        # it had not received is lost with the master, a resume included).
        await asyncio.to_thread(wait_until, lambda: cluster.replicated(node), 30, "the replica never caught up")
        node.kill()
        await asyncio.to_thread(
            wait_until,
            lambda: cluster.serving(redis_keys.rtc_peers(room)) not in (None, node),
            30,
            "no replica promoted",
        )
        await asyncio.to_thread(wait_until, cluster.healthy, 30, "the cluster did not recover")

        # The relay comes back on the promoted replica, both ways (a message sent while a
        # process has not yet found the new node may be lost: pub/sub is at-most-once).
        # Each process finds the new node on its own: each direction comes back by itself.
        sent = 0
        while not await _relayed(specialist, patient, f"after the failover {sent}", within_s=2):
            sent += 1
            assert sent < 15, "the relay did not come back after the failover"
        back = 0
        while not await _relayed(patient, specialist, f"and back {back}", within_s=2):
            back += 1
            assert back < 15, "the relay did not come back the other way"
        sent += back
        assert await _relayed(specialist, patient, "still there")
        assert await _relayed(patient, specialist, "both ways")
        for peer in (specialist, patient):
            assert set(peer.closes) <= {1013}, peer.closes  # told to retry, nothing else
            assert peer.resumed == peer.reconnections  # every reconnection resumed its place
            if peer.reconnections:
                assert peer.ready["state"] == "admitted"  # the room's state outlived its node
        # The room's state outlived its node: the patient's session resumes on the other process
        # (as the page does after a network change), still admitted, in the same place.
        moved = Peer(a, c.patient.token, str(c.appointment_id))
        moved.session = patient.session
        ready = await moved.join()
        assert (ready["resumed"], ready["peer"], ready["state"]) == (True, patient.ready["peer"], "admitted")
        assert moved.ws is not None
        await moved.ws.close()
        print(f"failover of {node.port}: closes {specialist.closes} {patient.closes}, lost {sent}")
    finally:
        for task in readers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_room_keeps_its_keys_and_channel_on_one_node(
    cluster: Cluster, cluster_client: redis_client.RedisClient
) -> None:
    """Joining (a transaction), relaying (a script over three keys) and closing (a two-key DEL)
    each touch one slot: a cluster would refuse them otherwise."""
    redis = cluster_client
    assert isinstance(redis, RedisCluster)
    room = str(uuid.uuid4())
    rooms = Rooms(redis, grace_s=5)
    slots = {
        redis.keyslot(k) for k in (redis_keys.rtc_peers(room), redis_keys.rtc_log(room), redis_keys.rtc_live(room))
    }
    slots.add(redis.keyslot(redis_keys.rtc_session(room, "token")))
    assert len(slots) == 1
    peer_id, token = await rooms.add(room, "user", "patient", "waiting")
    assert (await rooms.session(room, token)) is not None
    assert await rooms.session(str(uuid.uuid4()), token) is None  # a token works in its room only
    bus = room_bus.for_client(redis, cluster.url)
    heard: list[str] = []
    await bus.start()
    try:
        await bus.join(room, heard.append)
        seqs = await asyncio.gather(
            *(rooms.append_and_publish(room, peer_id, None, f'{{"n":{i}}}', f'{{"n":{i}}}') for i in range(20))
        )
        assert await rooms.append_and_publish(room, peer_id, "nobody", "{}", "{}") is None
        await until(lambda: asyncio.sleep(0, len(heard) == 20), "every relayed message arrived")
        assert [h.split("\n")[0] for h in heard] == seqs  # in order, with their log ids
        assert [seq for seq, _ in await rooms.since(room, seqs[9])] == seqs[10:]
        await bus.publish(room, '\n{"not":"kept"}')  # a room event that is not logged
        await until(lambda: asyncio.sleep(0, len(heard) == 21), "the unlogged event arrived")
        assert heard[-1] == '\n{"not":"kept"}'
        # A second room on this worker, wherever its slot is; leaving one keeps the other.
        other: list[str] = []
        second = str(uuid.uuid4())
        await bus.join(second, other.append)
        await bus.leave(room, heard.append)
        await bus.publish(second, "\nhello")
        await bus.publish(room, "\nunheard")
        await until(lambda: asyncio.sleep(0, other == ["\nhello"]), "the second room is heard")
        await bus.leave(second, other.append)
    finally:
        await bus.stop()
    await rooms.close(room)
    assert await rooms.peers(room) == {}


async def test_sign_in_codes_and_their_limits_on_the_cluster(cluster_client: redis_client.RedisClient) -> None:
    otp = OtpService(
        cluster_client, "secret" * 8, OtpPolicy(ttl_s=60, max_attempts=3, per_phone_per_hour=2, per_ip_per_hour=50)
    )
    phone = f"+8551{uuid.uuid4().int % 10**7:07d}"
    code = await otp.issue(phone, "203.0.113.9")
    with pytest.raises(Unauthenticated):
        await otp.verify(phone, "000000" if code != "000000" else "111111")
    await otp.verify(phone, code)  # right, once
    with pytest.raises(Unauthenticated, match="no valid code"):
        await otp.verify(phone, code)
    await otp.issue(phone, "203.0.113.9")
    with pytest.raises(RateLimited):
        await otp.issue(phone, "203.0.113.9")  # the third in the hour


async def test_ussd_sessions_sms_questions_and_the_budget_on_the_cluster(
    cluster_client: redis_client.RedisClient, db: asyncpg.Pool
) -> None:
    redis = cluster_client
    store = SessionStore(redis, ttl_s=30)
    sid = f"ATUid_{uuid.uuid4().hex}"
    session = Session(user_id=uuid.uuid4(), language="km", screen="main")
    await store.save(sid, session)
    assert await store.load(sid) == session
    await store.end(sid)
    assert await store.load(sid) is None

    phone = f"+8552{uuid.uuid4().int % 10**7:07d}"
    ask = conversation.AskMove(uuid.uuid4(), datetime.now(UTC).replace(microsecond=0), "Asia/Phnom_Penh")
    await conversation.settle(redis, phone, None, conversation.Reply("sms_move_confirm", ask=ask))
    assert await conversation.load(redis, phone) == ask
    await conversation.forget(redis, phone)
    assert await conversation.load(redis, phone) is None

    outbox = SmsOutbox(db, redis, LogSmsSender(), policy_from("KH", 10**9, 8, "http://x"))
    before = int(await redis.get(budget_key()) or 0)
    assert await outbox.spend_budget()
    assert int(await redis.get(budget_key()) or 0) == before + 1
    assert await redis.ttl(budget_key()) > 0
