"""What /dev/phone shows: the numbers to act as, and one number's SMS thread.

The outbound side of the thread is the SMS ledger itself (`sms_messages`, with each message's
delivery state), so the page shows what Spean really queued and what became of it, whatever the
sender (the log sender keeps its rows in the ledger too). Inbound texts are not kept by Spean
(`sms_inbound` records only the MessageSid and keyword), so the page's own sends are kept in a
short Redis list per number: a development transcript, never read by any patient journey.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from infra import redis_keys
from infra.db import Connection
from infra.redis_client import RedisClient

_TRANSCRIPT_KEPT = 50
_TRANSCRIPT_TTL_S = 7 * 24 * 3600
_OUTBOUND_SHOWN = 50
_NUMBERS_SHOWN = 200


class PhoneNumber(msgspec.Struct, kw_only=True):
    phone: str
    kind: Literal["patient", "chw"]
    label: str  # the people behind the number (a family phone has several), and for a CHW the post
    language: str | None = None


class Numbers(msgspec.Struct, kw_only=True):
    items: list[PhoneNumber]


class ThreadItem(msgspec.Struct, kw_only=True):
    direction: Literal["in", "out"]
    at: datetime
    text: str | None  # None: a sign-in code, wiped from the ledger once settled
    status: str | None = None  # outbound only: queued, sending, sent, delivered, undelivered, failed, refused
    error: str | None = None  # why it was refused or failed
    template: str | None = None
    segments: int | None = None
    encoding: str | None = None


class Thread(msgspec.Struct, kw_only=True):
    phone: str
    items: list[ThreadItem]


class _Sent(msgspec.Struct):
    text: str
    at: datetime


def _display(names: list[dict[str, Any]]) -> str:
    """A patient's usual name, with the first-listed one beside it when it differs (Khmer script)."""
    texts = [str(n["text"]) for n in names if n.get("text")]
    usual = next((str(n["text"]) for n in names if n.get("use") == "usual" and n.get("text")), None)
    if usual is None:
        return texts[0] if texts else "?"
    return usual if texts[0] == usual else f"{usual} · {texts[0]}"


async def numbers(conn: Connection) -> Numbers:
    """Patients' numbers (one entry per number, newest first: a shared family phone lists every
    patient on it) and the CHWs' (they get the CHW menus by USSD)."""
    patients = await conn.fetch(
        """SELECT phone, array_agg(names ORDER BY created_at) AS names,
                  (array_agg(preferred_language ORDER BY created_at))[1] AS language
             FROM patients WHERE phone IS NOT NULL
            GROUP BY phone ORDER BY max(created_at) DESC, phone LIMIT $1""",
        _NUMBERS_SHOWN,
    )
    chws = await conn.fetch(
        """SELECT u.phone, coalesce(u.display_name, u.phone) AS name,
                  string_agg(f.name, ', ' ORDER BY f.name) AS posts
             FROM users u JOIN memberships m ON m.user_id = u.id AND m.role = 'chw'
             JOIN facilities f ON f.id = m.facility_id
            WHERE u.disabled_at IS NULL
            GROUP BY u.id ORDER BY max(u.created_at) DESC, u.phone LIMIT $1""",
        _NUMBERS_SHOWN,
    )
    return Numbers(
        items=[
            *(
                PhoneNumber(
                    phone=r["phone"],
                    kind="patient",
                    label=" / ".join(_display(n) for n in r["names"]),
                    language=r["language"],
                )
                for r in patients
            ),
            *(PhoneNumber(phone=r["phone"], kind="chw", label=f"{r['name']} — {r['posts']}") for r in chws),
        ]
    )


async def remember_sent(redis: RedisClient, phone: str, text: str, at: datetime) -> None:
    """Keep a text the page sent as `phone`, for the thread (the last few, a week at most)."""
    key = redis_keys.dev_transcript(phone)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(key, msgspec.json.encode(_Sent(text, at)).decode())
        pipe.ltrim(key, -_TRANSCRIPT_KEPT, -1)
        pipe.expire(key, _TRANSCRIPT_TTL_S)
        await pipe.execute()


async def thread(conn: Connection, redis: RedisClient, phone: str) -> Thread:
    """The number's texts and Spean's messages to it, oldest first (a text and its answer share
    their transaction's timestamp: the text sorts first)."""
    sent = [msgspec.json.decode(raw, type=_Sent) for raw in await redis.lrange(redis_keys.dev_transcript(phone), 0, -1)]
    rows = await conn.fetch(
        """SELECT body, template, status, last_error, segments, encoding, created_at
             FROM sms_messages WHERE to_phone = $1 ORDER BY created_at DESC, id LIMIT $2""",
        phone,
        _OUTBOUND_SHOWN,
    )
    items = [ThreadItem(direction="in", at=s.at, text=s.text) for s in sent] + [
        ThreadItem(
            direction="out",
            at=r["created_at"],
            text=r["body"],
            status=r["status"],
            error=r["last_error"],
            template=r["template"],
            segments=r["segments"],
            encoding=r["encoding"],
        )
        for r in reversed(rows)
    ]
    items.sort(key=lambda i: (i.at, i.direction == "out"))  # stable: the ledger's order is kept
    return Thread(phone=phone, items=items)
