"""Every Redis key and channel Spean uses, in one place.

On a Redis Cluster a command, MULTI/EXEC, Lua script or multi-key DEL must touch keys of one hash
slot only. The rule here: a key that is ever used together with another carries a hash tag (the
part in braces is all the cluster hashes), and the keys used together share it. Every other key
is used alone (one command, or a transaction or script on that key only) and needs no tag.

| key                                   | type   | used with                    | lives           |
|---------------------------------------|--------|------------------------------|-----------------|
| rtc:{<room>}:peers                    | hash   | the room's log, live, session| a day idle      |
| rtc:{<room>}:log                      | stream | (append script) peers, live  | a day idle      |
| rtc:{<room>}:live                     | channel| (append script) peers, log   | —               |
| rtc:{<room>}:session:<token>          | string | (join) peers                 | a day           |
| spean:otp:code:<phone>                | hash   | alone (transaction, script)  | OTP lifetime    |
| spean:otp:rate:ip:<address>           | string | alone (transaction)          | an hour         |
| spean:otp:rate:phone:<phone>          | string | alone (transaction)          | an hour         |
| spean:sms:budget:<YYYYMMDDHH>         | string | alone (transaction)          | two hours       |
| spean:sms:ask:<phone>                 | string | alone                        | 15 minutes      |
| spean:ussd:<gateway session id>       | string | alone                        | USSD session    |
| spean:db:wrote:<user id>              | string | alone                        | replica lag     |
| spean:dev:phone:sms:<phone>           | list   | alone (transaction)          | a week          |
| spean:smart:jti:<client id>:<jti>     | string | alone (SET NX)               | assertion's exp |
| spean:rate:<bucket>                   | string | alone (transaction)          | its window      |

A room's channel is published from the same Lua script that appends to its log, so it is named
like a key of the room: on a cluster it is a sharded channel (SPUBLISH/SSUBSCRIBE) served by the
node that holds the room's slot.
"""

from __future__ import annotations


def _room(room: str) -> str:
    return f"rtc:{{{room}}}"


def rtc_peers(room: str) -> str:
    return _room(room) + ":peers"


def rtc_log(room: str) -> str:
    return _room(room) + ":log"


def rtc_live(room: str) -> str:
    return _room(room) + ":live"


def rtc_room_of_live(channel: str) -> str:
    """The room a `rtc_live` channel belongs to."""
    return channel.removeprefix("rtc:{").removesuffix("}:live")


def rtc_session(room: str, token: str) -> str:
    return _room(room) + ":session:" + token


def otp_code(phone: str) -> str:
    return "spean:otp:code:" + phone


def otp_rate(bucket: str) -> str:
    """`bucket` is "ip:<address>" or "phone:<phone>"."""
    return "spean:otp:rate:" + bucket


def sms_budget(hour: str) -> str:
    return "spean:sms:budget:" + hour


def sms_ask(phone: str) -> str:
    return "spean:sms:ask:" + phone


def ussd_session(session_id: str) -> str:
    return "spean:ussd:" + session_id


def db_wrote(user_id: object) -> str:
    return f"spean:db:wrote:{user_id}"


def dev_transcript(phone: str) -> str:
    return "spean:dev:phone:sms:" + phone


def smart_jti(client_id: object, jti: str) -> str:
    """A SMART client's assertion id, remembered until the assertion expires (each is used once)."""
    return f"spean:smart:jti:{client_id}:{jti}"


def rate(bucket: str) -> str:
    """A fixed-window counter (infra/rate_limit.py): e.g. "invitation-open:ip:<address>"."""
    return "spean:rate:" + bucket
