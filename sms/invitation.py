"""The SMS that carries a guest's invitation link into a video consultation.

The link is `<public base URL>/join/<locale>#<token>`: the token travels in the fragment, which
browsers never send to a server, so it stays out of access logs and Referer headers. It is in
the ledger only until the SMS has left (a `secret` message: its body is wiped once sent, as a
sign-in code's is). The text names no patient, doctor or specialty: only the time and the link.
An invitation the ledger would refuse (a country Spean does not text, a number that sent STOP,
the hourly budget spent) is refused whole: no invitation exists without its SMS.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time

from domain.errors import Conflict, DomainError, InvalidInput, Unavailable
from domain.invitations import manage
from domain.invitations.model import Invitation, Locale, Role
from domain.principal import Principal
from infra.db import Connection
from sms import texts
from sms.outbox import SmsOutbox

_REFUSED: dict[str, DomainError] = {
    "country_not_allowed": InvalidInput("sms_country_not_allowed", "Spean sends no SMS to this country", field="phone"),
    "opted_out": Conflict(
        "recipient_opted_out", "this number asked Spean to send it no more SMS (STOP)", field="phone"
    ),
    "hourly_budget": Unavailable("sms_budget_spent", "Spean's SMS budget for this hour is spent", retry_after_s=600),
}


def when(start: datetime, timezone: str, language: str) -> str:
    """The start on the consultation's clock, in the reader's way, with its UTC offset: a guest
    (a second specialist) may live on another clock."""
    local = start.astimezone(ZoneInfo(timezone))
    offset = local.strftime("%z")
    hours, minutes = int(offset[:3]), offset[3:]
    shown = f"UTC{hours:+d}" + ("" if minutes == "00" else f":{minutes}")
    text = f"{format_date(local, 'medium', locale=language)} {format_time(local, 'short', locale=language)} ({shown})"
    # CLDR puts narrow no-break spaces in times ("9:30\u202fAM"): outside GSM-7, they would
    # make an English text UCS-2, twice the segments.
    return " ".join(text.replace("\u202f", " ").replace("\xa0", " ").split())


def link(base_url: str, locale: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/join/{locale}#{token}"


async def invite(
    conn: Connection,
    outbox: SmsOutbox,
    principal: Principal,
    appointment_id: uuid.UUID,
    *,
    phone: str,
    name: str,
    role: Role,
    language: str | None,
    locale: Locale | None,
    base_url: str,
    default_region: str,
) -> tuple[Invitation, uuid.UUID]:
    """Invite and queue the SMS in `conn`'s transaction: (the invitation, its SMS to deliver
    once the transaction commits)."""
    created = await manage.create(
        conn,
        principal,
        appointment_id,
        phone=phone,
        name=name,
        role=role,
        language=language,
        locale=locale,
        default_region=default_region,
    )
    invitation = created.invitation
    template = f"invite_{invitation.role}"
    body = texts.text(
        invitation.locale,
        template,
        when=when(created.start, created.timezone, invitation.locale),
        link=link(base_url, invitation.locale, created.token),
    )
    message_id, refusal = await outbox.record(
        conn,
        to=invitation.phone,
        body=body,
        template=template,
        language=invitation.locale,
        key=f"invitation:{invitation.id}",
        secret=True,
    )
    if refusal is not None:
        raise _REFUSED[refusal]
    assert message_id is not None  # a fresh key: recorded
    return await manage.attach_sms(conn, invitation.id, message_id), message_id
