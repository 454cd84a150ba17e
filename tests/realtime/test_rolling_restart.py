"""A rolling restart as production does it: two `spean serve` processes behind a real balancer
(Caddy, health-checking /ready), each sent SIGTERM and started again in turn while clients keep
reading and writing and a specialist and a patient stay in a consultation.

What must hold: no request fails; each process exits on its own (status 0) after draining; the
peers on a stopping process are told 1012 (service restart), reconnect through the balancer to the
other process and resume their place in the room, and the relay still carries their messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from infra.config import Settings
from infra.embedded import free_port
from tests.factory import Consultation
from tests.live import server_env, start_server, wait_ready

DRAIN_S = 1.5
# Ten of the balancer's health intervals: what a deployment waits between two pods' restarts
# (readiness seen by the balancer, not only by the process), also on a loaded machine.
HEALTH_SETTLE_S = 2.0
RECONNECT = {1012, 1013}  # service restart; try again later
# least_conn, as deploy/Caddyfile: Debian's Caddy 2.6's round_robin shares one counter between
# concurrent selections, so with one process out of rotation a request can be turned to the
# stopped one twice and find "no upstreams available" (a bare 503 that Caddy before 2.7 does not
# retry for a POST); least_conn looks at every process and takes any that is in rotation.
CADDYFILE = """{{
\tadmin off
\tauto_https off
}}
:{port} {{
\treverse_proxy {upstreams} {{
\t\tlb_policy round_robin
\t\tlb_try_duration 5s
\t\tlb_try_interval 50ms
\t\thealth_uri /ready
\t\thealth_interval 200ms
\t\thealth_timeout 1s
\t}}
}}
"""


@dataclass
class Stack:
    lb: str
    env: dict[str, str]
    ports: list[int]
    procs: list[subprocess.Popen[bytes]]
    folder: Path
    restarts: list[int] = field(default_factory=list)

    def roll(self, i: int) -> int:
        """SIGTERM process i, wait for it to drain and exit, start it again; its exit status."""
        self.procs[i].send_signal(signal.SIGTERM)
        status = self.procs[i].wait(30)
        log = self.folder / f"server-{self.ports[i]}-{len(self.restarts)}.log"
        self.procs[i] = start_server(self.env, self.ports[i], log, "--no-migrate")
        wait_ready(self.ports[i], self.procs[i], log)
        self.restarts.append(i)
        return status


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (apt-get install caddy; .ci/run installs it)")
    env = server_env(settings, tmp_path, SPEAN_DRAIN_SECONDS=str(DRAIN_S), SPEAN_RTC_GRACE="30")
    ports = [free_port(), free_port()]
    procs = [start_server(env, port, tmp_path / f"server-{port}.log", "--no-migrate") for port in ports]
    lb_port = free_port()
    config = tmp_path / "Caddyfile"
    config.write_text(CADDYFILE.format(port=lb_port, upstreams=" ".join(f"127.0.0.1:{p}" for p in ports)))
    proxy: subprocess.Popen[bytes] | None = None
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_ready(port, proc, tmp_path / f"server-{port}.log")
        with (tmp_path / "caddy.log").open("wb") as out:
            proxy = subprocess.Popen(
                [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**env, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
            )
        wait_ready(lb_port, proxy, tmp_path / "caddy.log")
        yield Stack(f"127.0.0.1:{lb_port}", env, ports, procs, tmp_path)
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(10)
        for proc in procs:
            proc.kill()
            proc.wait(10)


class Peer:
    """A signalling client that, like the consult page, reconnects after 1012 and resumes."""

    def __init__(self, lb: str, token: str, appointment_id: str) -> None:
        self.url, self.token, self.appointment_id = f"ws://{lb}/v1/rtc", token, appointment_id
        self.ws: ClientConnection | None = None
        self.ready: dict[str, Any] = {}
        self.session: str | None = None
        self.last_seq: str | None = None
        self.closes: list[int] = []
        self.resumed = 0
        self.reconnections = 0
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def join(self) -> dict[str, Any]:
        """Connect and join (resuming once there is a session), as the page does: a 1013 (the
        database or Redis away for a moment: on this shared machine, a connection limit) means
        try again shortly."""
        for _ in range(20):
            self.ws = await connect(self.url, open_timeout=5)
            await self.ws.send(json.dumps({"type": "auth", "token": self.token}))
            join: dict[str, Any] = {"type": "join", "appointment_id": self.appointment_id}
            if self.session is not None:
                join |= {"resume": self.session, **({"last_seq": self.last_seq} if self.last_seq else {})}
            await self.ws.send(json.dumps(join))
            try:
                while True:
                    message: dict[str, Any] = json.loads(await self.ws.recv())
                    if message["type"] == "ready":
                        self.session = message["session"]
                        self.resumed += message["resumed"]
                        self.ready = message
                        return message
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else 1006
                assert code in RECONNECT, f"join closed with {code}"
                self.closes.append(code)
                await asyncio.sleep(0.5)
        raise AssertionError("could not join in 20 tries")

    async def run(self) -> None:
        """Read forever; when the server restarts, reconnect through the balancer and resume."""
        while True:
            assert self.ws is not None
            try:
                message = json.loads(await self.ws.recv())
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else 1006
                assert code in RECONNECT, f"closed with {code}, not a code that says reconnect"
                self.closes.append(code)
                self.reconnections += 1
                await self.join()
                continue
            if message.get("seq"):
                self.last_seq = message["seq"]
            await self.inbox.put(message)

    async def send(self, **message: Any) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    async def next(self, kind: str, within: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                message = await self.inbox.get()
                if message["type"] == kind:
                    return message


async def test_a_rolling_restart_under_load_fails_no_request_and_keeps_the_call(
    stack: Stack, consultation: Consultation
) -> None:
    c = consultation
    patient_headers = {"Authorization": f"Bearer {c.patient.token}"}
    specialist = Peer(stack.lb, c.specialist.token, str(c.appointment_id))
    patient = Peer(stack.lb, c.patient.token, str(c.appointment_id))
    await specialist.join()
    await patient.join()
    readers = [asyncio.create_task(p.run()) for p in (specialist, patient)]
    await specialist.send(type="admit", peer=patient.ready["peer"])
    await patient.next("admitted")

    outcomes: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    failures: list[str] = []
    stop = asyncio.Event()

    async def client(n: int) -> None:
        """Reads of the patient's record and device registrations (a write with an
        Idempotency-Key), as the app sends them, back to back."""
        async with httpx.AsyncClient(base_url=f"http://{stack.lb}", timeout=10) as http:
            while not stop.is_set():
                try:
                    if n % 2:
                        r = await http.get(f"/v1/patients/{c.patient.patient_id}", headers=c.chw.headers)
                    else:
                        body = {"token": secrets.token_urlsafe(32), "platform": "android"}
                        headers = {**patient_headers, "Idempotency-Key": secrets.token_hex(16)}
                        r = await http.post("/v1/me/devices", json=body, headers=headers)
                        for _ in range(3):
                            # Should Caddy find no process in rotation (both health checks
                            # failed at once on a starved machine), it answers its own bare 503
                            # ("no upstreams available", no body from Spean) and, before 2.7,
                            # does not retry a POST. The app sends the same request again with
                            # the same Idempotency-Key, which is what the key is for: it is
                            # written once whichever attempt arrives. Counted apart.
                            if r.status_code != 503 or r.content:
                                break
                            retried["POST after the balancer's 503"] += 1
                            await asyncio.sleep(0.1)
                            r = await http.post("/v1/me/devices", json=body, headers=headers)
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                outcomes[f"{r.request.method} {r.status_code}"] += 1
                if r.status_code >= 300:
                    failures.append(f"{r.request.method} {r.url.path} → {r.status_code} {r.text[:200]}")

    load = [asyncio.create_task(client(n)) for n in range(6)]
    try:
        await asyncio.sleep(HEALTH_SETTLE_S)  # the balancer has checked both processes since it started
        before = sum(outcomes.values())
        for i in (0, 1):
            started = time.monotonic()
            status = await asyncio.to_thread(stack.roll, i)
            assert status == 0, f"server {i} exited with {status}"
            assert time.monotonic() - started >= DRAIN_S  # it served out its drain first
            # The balancer takes it back at its next health check (every 200 ms): a few of them,
            # so that the other process is not stopped while this one is still out of rotation.
            await asyncio.sleep(HEALTH_SETTLE_S)
        stop.set()
        await asyncio.gather(*load)
    finally:
        stop.set()
        for task in load:
            task.cancel()
    print(f"rolling restart: {dict(outcomes)}, retried {dict(retried)}; closes {specialist.closes} {patient.closes}")
    assert failures == []
    assert sum(outcomes.values()) - before > 100, outcomes
    assert set(outcomes) == {"GET 200", "POST 201"}, outcomes

    # Every peer was on one of the two processes, so each was told 1012 at least once, came back
    # through the balancer and resumed its place: same peer, still admitted, no new join.
    for peer in (specialist, patient):
        assert 1012 in peer.closes, "each peer's process was restarted"
        assert peer.resumed == peer.reconnections
        assert peer.ready["state"] == "admitted"
    # And the relay carries the call's messages on whatever processes they are on now.
    await specialist.send(type="chat", text="still there?")
    assert (await patient.next("chat"))["text"] == "still there?"
    for task in readers:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
