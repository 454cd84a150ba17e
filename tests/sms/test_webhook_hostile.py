"""Signed webhooks take hostile values like every other route: a clear 4xx or a reply, never a 500."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.sms.conftest import FROM_NUMBER
from tests.sms.test_twilio import _signed

Client = AsyncTestClient[Litestar]


def _form(**values: str) -> dict[str, str]:
    return {"MessageSid": "SM" + uuid.uuid4().hex, "From": "+85597000001", "To": FROM_NUMBER, "Body": "HELP", **values}


async def test_signed_hostile_values_never_reach_the_database_as_errors(sms_client: Client) -> None:
    hostile = {
        "Body": ["a\x00b", "x" * 20_000, "9" * 400, "CANCEL 99999999999999999999999"],
        "From": ["+855\x00970", "not a phone", "+" + "9" * 40],
        "MessageSid": ["SM\x00", "S" * 500, ""],
    }
    for field, values in hostile.items():
        for value in values:
            form = _form(**{field: value})
            answer = await sms_client.post("/v1/sms/inbound", data=form, headers=_signed("/v1/sms/inbound", form))
            assert 200 <= answer.status_code < 500, (field, value[:40], answer.status_code, answer.text[:300])
    status = {"MessageSid": "SM\x00x", "MessageStatus": "delivered\x00"}
    answer = await sms_client.post("/v1/sms/status", data=status, headers=_signed("/v1/sms/status", status))
    assert 200 <= answer.status_code < 500, answer.text[:300]


async def test_the_same_message_twice_at_once_is_handled_once(sms_client: Client, sms_db: asyncpg.Pool) -> None:
    form = _form(Body="HELP")
    headers = _signed("/v1/sms/inbound", form)
    answers = await asyncio.gather(*(sms_client.post("/v1/sms/inbound", data=form, headers=headers) for _ in range(5)))
    assert {a.status_code for a in answers} == {200}, [a.text[:200] for a in answers]
    assert await sms_db.fetchval("SELECT count(*) FROM sms_inbound WHERE message_sid = $1", form["MessageSid"]) == 1
    replies = await sms_db.fetchval(
        "SELECT count(*) FROM sms_messages WHERE idempotency_key = $1", f"in:{form['MessageSid']}"
    )
    assert replies == 1
