"""REGISTER from a number Spean does not know: name → birth year → village → health post (by
name; several match → a numbered choice), then the patient is created through
domain.self_registration (the number's own login acts, channel `sms`; the registration waits for
the CHW of that post to verify it). No health post found, or registration refused → the person
is told to visit their health post.

An answer that does not fit (an empty name, a year that is not one) asks the same question again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import msgspec

from domain import patients, self_registration
from sms.conversation import KEEP, AskRegister, Reply, attempt
from sms.journeys.turn import Turn, short

_NAME_MAX = 100


def start(turn: Turn) -> Reply:
    return Reply("sms_register_name", {}, AskRegister(step="name", language=turn.language))


def _year(text: str) -> int | None:
    digits = "".join(text.split())
    if not digits.isdecimal():  # any script's digits: ១៩៨៥ is 1985
        return None
    year = int(digits)
    return year if 1880 <= year <= datetime.now(UTC).year else None


async def answer(turn: Turn, question: AskRegister, body: str, number: int | None) -> Reply:
    text = " ".join(body.split())
    if question.step == "name":
        if not 1 <= len(text) <= _NAME_MAX or text.isdecimal():
            return Reply("sms_register_name", {}, KEEP)
        return Reply("sms_register_birth_year", {}, msgspec.structs.replace(question, step="birth_year", name=text))
    if question.step == "birth_year":
        year = _year(text)
        if year is None:
            return Reply("sms_register_birth_year", {}, KEEP)
        return Reply("sms_register_village", {}, msgspec.structs.replace(question, step="village", birth_year=year))
    if question.step == "village":
        if not 1 <= len(text) <= 200:
            return Reply("sms_register_village", {}, KEEP)
        return Reply("sms_register_post", {}, msgspec.structs.replace(question, step="post", village=text))
    if question.step == "post":
        posts = await self_registration.match_health_posts(turn.conn, text)
        if not posts:
            return Reply("sms_register_no_post")
        if len(posts) == 1:
            return await _register(turn, question, posts[0])
        items = turn.numbered([short(p.name) for p in posts])
        return Reply(
            "sms_register_post_choice",
            {"items": items},
            msgspec.structs.replace(question, step="post_choice", posts=posts),
        )
    if number is None or not 1 <= number <= len(question.posts):
        return Reply("sms_choose_number", {"n": len(question.posts)}, KEEP)
    return await _register(turn, question, question.posts[number - 1])


async def _register(turn: Turn, question: AskRegister, post: self_registration.Post) -> Reply:
    refused = await attempt(
        self_registration.register(
            turn.conn,
            turn.phone,
            name=question.name,
            birth_year=question.birth_year,
            village=question.village,
            health_post_id=post.id,
            language=cast(patients.Language, question.language),
            channel="sms",
            default_region=turn.default_region,
        ),
        turn.conn,
    )
    if refused is not None and refused.code == "duplicate_patient":  # this person registered already
        return Reply("sms_register_duplicate")
    if refused is not None:
        return Reply("sms_unknown_number")
    return Reply("sms_registered", {"name": short(question.name), "post": short(post.name)})
