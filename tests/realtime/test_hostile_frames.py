"""Hostile /v1/rtc frames get an `error` frame (or 4400 before authentication), never 1011."""

from __future__ import annotations

from tests.factory import Consultation
from tests.realtime.client import Signal
from tests.realtime.conftest import Servers

_DEEP_OBJECT = '{"a":' * 5000 + "1" + "}" * 5000
HOSTILE_FRAMES: list[str | bytes] = [
    "[" * 20_000 + "]" * 20_000,  # beyond the interpreter's recursion limit
    '{"type": "ice", "to": "p", "candidate": ' + _DEEP_OBJECT + "}",
    '{"type": "ice", "to": "p", "candidate": ' + '{"a":' * 40 + "1" + "}" * 40 + "}",  # beyond MAX_DEPTH
    '{"type": "chat", "text": "a\\u0000b"}',
    '{"type": "ice", "to": "p", "candidate": {"candidate": "x\\u0000"}}',
    '{"type": "ice", "to": "p", "candidate": {"k\\u0000": 1}}',
    '{"type": "join", "appointment_id": "00000000-0000-0000-0000-000000000000", "resume": "\\u0000"}',
    b'{"type": "chat", "text": "\xff\xfe"}',  # invalid UTF-8 in a binary frame
    b"\xc3\x28",
]


async def test_each_hostile_frame_is_answered_and_the_socket_stays(
    rtc_servers: Servers, consultation: Consultation
) -> None:
    c = consultation
    specialist = await Signal.open(rtc_servers.a)
    await specialist.join(c.specialist.token, c.appointment_id)
    for frame in HOSTILE_FRAMES:
        await specialist.ws.send(frame)
        error = await specialist.next("error")
        assert error["code"] == "malformed_message", (frame[:80], error)
    await specialist.send(type="ping")
    assert (await specialist.next("pong"))["type"] == "pong"
    await specialist.close()


async def test_a_hostile_first_frame_closes_with_4400(rtc_servers: Servers) -> None:
    for frame in [*HOSTILE_FRAMES[:2], '{"type": "auth", "token": "x\\u0000y"}']:
        socket = await Signal.open(rtc_servers.b)
        await socket.ws.send(frame)
        assert await socket.closed_with() == 4400, frame[:80]
        assert socket.seen, frame[:80]
        assert socket.seen[0]["type"] == "error"
