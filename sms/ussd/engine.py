"""One USSD turn: the gateway's callback in, the next screen (CON) or the last word (END) out.

The gateway sends every answer of the session so far, `*`-joined; the session (sms.ussd.session)
remembers how many were handled, so only the new ones are. The turn's reply carries the session
to keep; the caller stores it (`remember`) once the turn's transaction committed, so a turn that
is rolled back and run again never finds its own answers already counted. Navigation holds on every screen:
0 goes back, 00 to the main menu; an invalid answer asks again once, then the session ends
politely. A domain refusal (a slot just taken, an appointment no longer booked) ends the session
with its reason in the patient's words (sms.ussd.errors), raised as Refused so that the caller
rolls the turn's writes back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import msgspec

from domain import constraints
from domain.errors import DomainError, InvalidInput, Unauthenticated, Unavailable
from domain.identity import users
from domain.phone import normalize
from infra.db import Connection
from sms import texts
from sms.ussd.actions import ACTIONS, ANSWERS
from sms.ussd.context import Again, Context, End, Goto, Outcome
from sms.ussd.errors import message_of
from sms.ussd.lists import ITEMS, VALUES
from sms.ussd.menu import CHW, MAIN, SCREENS, TOPS, WHO
from sms.ussd.render import Line, end_text, render
from sms.ussd.session import Session, SessionStore

STRIKES = 2  # the second invalid answer on a screen ends the session


@dataclass(frozen=True)
class Reply:
    text: str
    ends: bool
    session: Session | None = None  # the state the next turn starts from (None when the session ends)

    @property
    def wire(self) -> str:
        return ("END " if self.ends else "CON ") + self.text


def _end(language: str, message: str, outcome: End | None = None) -> Reply:
    if outcome is None:
        return Reply(end_text(language, message), ends=True)
    return Reply(end_text(language, message, outcome.values, outcome.fixed), ends=True)


class Refused(Exception):
    """The domain refused what the turn asked (a slot just taken, an appointment no longer
    booked): the caller rolls the turn's transaction back, as the app's routes do on an error,
    and ends the session with `reply`, the reason in the caller's words."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


async def turn(
    conn: Connection,
    store: SessionStore,
    *,
    session_id: str,
    phone: str,
    text: str,
    default_region: str,
    request_id: str | None = None,
) -> Reply:
    inputs = text.split("*") if text else []
    session = await store.load(session_id)
    fresh = session is None
    if session is None:
        started = await _start(conn, phone, default_region)
        if isinstance(started, Reply):
            return started
        # A session that timed out on the gateway's side may still send its old answers: they
        # are not replayed, the patient starts again at the top.
        session = started
        session.seen = len(inputs)
    principal = await users.load_principal(conn, session.user_id)
    ctx = Context(
        conn,
        msgspec.structs.replace(principal, channel="ussd", request_id=request_id),
        session,
        default_region,
    )
    new = inputs[session.seen :]
    session.seen = max(session.seen, len(inputs))
    try:
        reply = await _show(ctx, session.screen) if fresh or not new else None
        for answer in [] if reply else new:
            reply = await _answer(ctx, answer.strip())
            if reply.ends:
                break
    except DomainError as refused:
        raise Refused(_end(session.language, message_of(refused))) from refused
    except asyncpg.PostgresError as exc:
        mapped = constraints.domain_error(exc)
        if mapped is None or isinstance(mapped, Unavailable):
            raise  # a bug, or a race the whole turn may win when run again (sms.ussd.gateway)
        raise Refused(_end(session.language, message_of(mapped))) from exc
    assert reply is not None
    return reply if reply.ends else Reply(reply.text, ends=False, session=session)


async def remember(store: SessionStore, session_id: str, reply: Reply) -> None:
    """Keep the session for the next turn, or forget it when the reply ends it."""
    if reply.ends or reply.session is None:
        await store.end(session_id)
    else:
        await store.save(session_id, reply.session)


async def spoken_language(conn: Connection, raw_phone: str, default_region: str) -> str | None:
    """The preferred language of the first patient registered with this phone, read only (for a
    last word when the session's own state cannot be read)."""
    try:
        phone = normalize(raw_phone, default_region)
    except InvalidInput:
        return None
    language: str | None = await conn.fetchval(
        "SELECT preferred_language FROM patients WHERE phone = $1 ORDER BY created_at, id LIMIT 1", phone
    )
    return language


async def _start(conn: Connection, raw_phone: str, default_region: str) -> Session | Reply:
    """Who is calling: the phone's login and the patients it reaches, or an END that says why not."""
    guess = texts.language_for_phone(raw_phone)
    try:
        phone = normalize(raw_phone, default_region)
        user_id = await users.login(conn, phone)  # the gateway vouches for the number, as an OTP would
    except InvalidInput:
        return _end(guess, "ussd_unknown_number")
    except Unauthenticated:
        return _end(guess, "ussd_err_denied")
    if user_id is None:
        return _end(guess, "ussd_unknown_number")
    rows = await conn.fetch(
        """SELECT p.id, p.preferred_language FROM patient_accounts pa JOIN patients p ON p.id = pa.patient_id
           WHERE pa.user_id = $1 ORDER BY p.created_at, p.id""",
        user_id,
    )
    if not rows:
        principal = await users.load_principal(conn, user_id)
        if principal.facilities_with("chw"):
            return Session(user_id=user_id, language=guess, screen=CHW, chw=True)
        return _end(guess, "ussd_unknown_number")
    if len(rows) == 1:
        return Session(user_id=user_id, language=rows[0]["preferred_language"], screen=MAIN, patient_id=rows[0]["id"])
    return Session(user_id=user_id, language=rows[0]["preferred_language"], screen=WHO)


def _top(session: Session) -> str:
    if session.chw:
        session.patient_id = None  # a CHW's next errand may be for another patient
        return CHW
    return MAIN if session.patient_id is not None else WHO


async def _enter(ctx: Context, screen_id: str) -> Reply:
    """Go forward to `screen_id`; 0 will come back here."""
    if ctx.session.screen != screen_id:
        ctx.session.stack.append(ctx.session.screen)
    return await _show(ctx, screen_id)


async def _show(ctx: Context, screen_id: str, notice: str | None = None) -> Reply:
    session = ctx.session
    if screen_id != session.screen:
        session.strikes = 0
    session.screen = screen_id
    screen = SCREENS[screen_id]
    values: dict[str, str] = {}
    fixed: dict[str, str] = {}
    if screen.values is not None:
        loaded = await VALUES[screen.values](ctx)
        if not isinstance(loaded, tuple):
            return await _follow(ctx, loaded)
        values, fixed = loaded
    lines = [Line(o.key, texts.text(ctx.language, o.label)) for o in screen.options]
    found: dict[str, str] = {}
    if screen.items is not None:
        items = await ITEMS[screen.items](ctx)
        if not items and screen.empty:
            return _end(ctx.language, screen.empty)
        lines += [line for line, _ in items]
        found = {line.key: value for line, value in items}
    text, shown = render(
        ctx.language, screen.title, values, lines, fixed=fixed, notice=notice, footer=screen_id not in TOPS
    )
    session.options = {line.key: found[line.key] for line in shown if line.key in found}
    return Reply(text, ends=False)


async def _follow(ctx: Context, outcome: Outcome) -> Reply:
    if isinstance(outcome, Goto):
        return await _show(ctx, outcome.screen)
    if isinstance(outcome, End):
        return _end(ctx.language, outcome.message, outcome)
    return await _invalid(ctx, outcome)


async def _invalid(ctx: Context, again: Again) -> Reply:
    ctx.session.strikes += 1
    if ctx.session.strikes >= STRIKES:
        return _end(ctx.language, "ussd_bye_invalid")
    return await _show(ctx, ctx.session.screen, notice=again.notice)


async def _answer(ctx: Context, answer: str) -> Reply:
    session = ctx.session
    if answer == "00":
        session.stack.clear()
        return await _show(ctx, _top(session))
    if answer == "0":
        return await _show(ctx, session.stack.pop() if session.stack else _top(session))
    screen = SCREENS[session.screen]
    if screen.answer is not None:
        outcome = await ANSWERS[screen.answer](ctx, answer)
        if isinstance(outcome, Goto):
            return await _enter(ctx, outcome.screen)
        return await _follow(ctx, outcome)
    option = next((o for o in screen.options if o.key == answer), None)
    if option is not None and option.goto is not None:
        if option.goto == MAIN:
            session.stack.clear()
            return await _show(ctx, _top(session))
        return await _enter(ctx, option.goto)
    if option is not None and option.action is not None:
        outcome = await ACTIONS[option.action](ctx, option.value)
        return _end(ctx.language, outcome.message, outcome)
    if answer in session.options and screen.then is not None:
        value = session.options[answer]
        if session.screen == WHO:
            session.patient_id = uuid.UUID(value)
            session.language = await ctx.conn.fetchval(
                "SELECT preferred_language FROM patients WHERE id = $1", session.patient_id
            )
            session.stack.clear()
            return await _show(ctx, MAIN)
        assert screen.store is not None
        if screen.store == "patient":  # a CHW picked one of several matches
            session.patient_id = uuid.UUID(value)
        else:
            session.choices[screen.store] = value
        return await _enter(ctx, screen.then)
    return await _invalid(ctx, Again("ussd_invalid"))
