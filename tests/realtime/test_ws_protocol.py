"""realtime.ws_protocol: per-message deflate without kept state, small messages sent as they are.
(Through `spean serve`, every relay test in this folder goes over this protocol and the direct
write the handler uses when nothing is queued.)"""

from __future__ import annotations

import json
import zlib

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from realtime.ws_protocol import MIN_COMPRESSED, _MessageDeflate, _MessageDeflateFactory


def _pair() -> tuple[_MessageDeflate, PerMessageDeflate]:
    """The server's extension as negotiated, and a client's decoder for what it sends."""
    _, server = _MessageDeflateFactory().process_request_params(
        [("server_no_context_takeover", None), ("client_no_context_takeover", None)], []
    )
    assert isinstance(server, _MessageDeflate)
    client = PerMessageDeflate(True, True, server.local_max_window_bits, server.remote_max_window_bits)
    return server, client


def test_a_small_message_goes_uncompressed() -> None:
    server, client = _pair()
    data = json.dumps({"type": "chat", "text": "hello", "from": "a1b2c3d4e5f6", "seq": "1-0"}).encode()
    assert len(data) < MIN_COMPRESSED
    sent = server.encode(Frame(Opcode.TEXT, data))
    assert not sent.rsv1  # RFC 7692: the message says it is not compressed
    assert sent.data == data
    assert client.decode(sent).data == data


def test_a_large_message_is_compressed_and_no_compressor_is_kept() -> None:
    server, client = _pair()
    sdp = "v=0\r\n" + "a=candidate:1 1 udp 2122260223 192.168.1.23 54321 typ host generation 0\r\n" * 40
    data = json.dumps({"type": "offer", "sdp": sdp, "from": "a1b2c3d4e5f6"}).encode()
    sent = server.encode(Frame(Opcode.TEXT, data))
    assert sent.rsv1
    assert len(sent.data) < len(data) / 3
    assert "encoder" not in server.__dict__  # nothing held between messages
    assert client.decode(sent).data == data
    # Each message on its own (no context takeover): a fresh decompressor reads the next one.
    again = server.encode(Frame(Opcode.TEXT, data))
    fresh = zlib.decompressobj(wbits=-server.local_max_window_bits)
    assert fresh.decompress(bytes(again.data) + b"\x00\x00\xff\xff") == data


def test_control_frames_pass_through() -> None:
    server, _ = _pair()
    ping = Frame(Opcode.PING, b"1234")
    assert server.encode(ping) is ping
