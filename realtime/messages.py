"""The signalling protocol: JSON objects tagged by `type`, decoded into typed Structs.

Client → server: auth (or guest), join, admit, offer, answer, ice, media, quality, audio_only, chat, leave,
end, ping. Server → client: ready, waiting, admitted, peer_waiting, peer_joined, peer_left,
relayed offer/answer/ice/media/quality/audio_only/chat (with `from` and `seq`), ended, revoked (a
guest's invitation was withdrawn), file and file_filed (realtime.call_files: a file shared over
HTTP, or filed into the record; members only), error, pong.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec

from api.input_rules import decoded_problem, nul_field

Sdp = Annotated[str, msgspec.Meta(max_length=32_000)]
PeerId = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class Auth(msgspec.Struct, tag="auth", forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(max_length=4096)]


class GuestAuth(msgspec.Struct, tag="guest", forbid_unknown_fields=True):
    """A guest's first message instead of `auth`: their invitation link's token and the key of
    the browser that opened it (domain.invitations.guest)."""

    token: Annotated[str, msgspec.Meta(min_length=16, max_length=64)]
    device: Annotated[str, msgspec.Meta(min_length=16, max_length=128)]


class Join(msgspec.Struct, tag="join", forbid_unknown_fields=True):
    appointment_id: uuid.UUID
    resume: Annotated[str, msgspec.Meta(max_length=128)] | None = None  # the session token from `ready`
    last_seq: Annotated[str, msgspec.Meta(max_length=64)] | None = None  # last relayed message seen


class Admit(msgspec.Struct, tag="admit", forbid_unknown_fields=True):
    peer: PeerId


class Offer(msgspec.Struct, tag="offer", forbid_unknown_fields=True):
    to: PeerId
    sdp: Sdp
    ice_restart: bool = False


class Answer(msgspec.Struct, tag="answer", forbid_unknown_fields=True):
    to: PeerId
    sdp: Sdp


class Ice(msgspec.Struct, tag="ice", forbid_unknown_fields=True):
    to: PeerId
    candidate: dict[str, Any] | None  # None: end of candidates


class Media(msgspec.Struct, tag="media", forbid_unknown_fields=True):
    audio: bool
    video: bool


class Quality(msgspec.Struct, tag="quality", forbid_unknown_fields=True):
    level: Literal["good", "fair", "poor"]
    bitrate_kbps: Annotated[int, msgspec.Meta(ge=0, le=100_000)] | None = None


class AudioOnly(msgspec.Struct, tag="audio_only", forbid_unknown_fields=True):
    enabled: bool


class Chat(msgspec.Struct, tag="chat", forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class Leave(msgspec.Struct, tag="leave", forbid_unknown_fields=True):
    pass


class End(msgspec.Struct, tag="end", forbid_unknown_fields=True):
    pass


class Ping(msgspec.Struct, tag="ping", forbid_unknown_fields=True):
    pass


Relayed = Offer | Answer | Ice | Media | Quality | AudioOnly | Chat
Incoming = (
    Auth | GuestAuth | Join | Admit | Offer | Answer | Ice | Media | Quality | AudioOnly | Chat | Leave | End | Ping
)

_decoder = msgspec.json.Decoder(Incoming)
_encoder = msgspec.json.Encoder()


def decode(frame: str | bytes) -> Incoming:
    """Raise msgspec.DecodeError / ValidationError on anything that is not a known message.

    The same rules as an HTTP body (api/input_rules.py): valid UTF-8, nesting within MAX_DEPTH,
    no NUL in any string, so a hostile frame gets an `error` frame, never a server error."""
    try:
        message: Incoming = _decoder.decode(frame)
        nul = nul_field(frame)
    except RecursionError:
        raise msgspec.DecodeError("the message is nested too deeply") from None
    except UnicodeDecodeError:
        raise msgspec.DecodeError("the message is not valid UTF-8") from None
    if nul:
        raise msgspec.ValidationError(f"the NUL character (U+0000) is not allowed - at `$.{nul}`")
    if problem := decoded_problem(message):
        raise msgspec.ValidationError(f"{problem[2]} - at `$.{problem[1]}`")
    return message


def encode(message: dict[str, Any]) -> str:
    return _encoder.encode(message).decode()


def relayed_body(message: Relayed) -> dict[str, Any]:
    """The message as forwarded: the sender's fields without the addressing."""
    body = msgspec.to_builtins(message)
    body.pop("to", None)
    return body  # type: ignore[no-any-return]


# Close codes (RFC 6455 private range 4000-4999, plus 1009 "message too big").
CLOSE_MALFORMED = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_CONFLICT = 4409
CLOSE_RATE_LIMITED = 4429
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_TRY_AGAIN = 1013  # PostgreSQL or Redis is away for a moment: reconnect (and resume) later
