"""HTTP side of guests in a video consultation: the care team invites (by SMS), lists and revokes
guests under the appointment; the guest's page opens its link (no account, no bearer token).

Here rather than in api/routes because a revocation also takes the guest out of the room, which
is the signalling's business (realtime.guests), once the revocation has committed.
"""

from __future__ import annotations

import hashlib
import uuid
from functools import partial
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from api.deps import Caller, Config, Conn
from api.request_id import request_id_of
from api.transaction import after_commit, send_after_commit
from domain.errors import RateLimited
from domain.fields import Code, Name, Phone
from domain.invitations import guest, manage
from domain.invitations.guest import Opened
from domain.invitations.model import Invitation, Locale, Role
from infra.config import Settings
from infra.rate_limit import over_limit
from realtime.guests import remove_guest
from sms import invitation as invitation_sms
from sms.outbox import SmsOutbox

Secret = Annotated[str, msgspec.Meta(min_length=16, max_length=64)]
BrowserKey = Annotated[str, msgspec.Meta(min_length=16, max_length=128)]


class InviteRequest(msgspec.Struct, kw_only=True):
    phone: Phone
    name: Name  # how the room will name the guest
    role: Role
    language: Code | None = None  # an interpreter's language (ISO 639), required for them only
    locale: Locale | None = None  # the guest's SMS and page; the patient's language if omitted


class InvitationList(msgspec.Struct, kw_only=True):
    items: list[Invitation]


class OpenRequest(msgspec.Struct, kw_only=True):
    token: Secret  # from the link's fragment
    device: BrowserKey  # a random key the guest's browser made and keeps


class InvitationController(Controller):
    path = "/v1/appointments/{appointment_id:uuid}/invitations"
    tags = ["realtime"]

    @post("/", summary="Invite a guest (family member, interpreter, second specialist) by SMS link")
    async def invite(
        self,
        request: Request[Any, Any, Any],
        appointment_id: FromPath[uuid.UUID],
        data: JSONBody[InviteRequest],
        conn: Conn,
        principal: Caller,
        settings: Config,
    ) -> Invitation:
        """The link is in the SMS only: this answer (kept for Idempotency-Key replays) has no token."""
        outbox: SmsOutbox = request.app.state.sms_outbox
        invitation, sms_id = await invitation_sms.invite(
            conn,
            outbox,
            principal,
            appointment_id,
            phone=data.phone,
            name=data.name,
            role=data.role,
            language=data.language,
            locale=data.locale,
            base_url=settings.public_base_url,
            default_region=settings.default_region,
        )
        send_after_commit(request.scope, outbox, sms_id)
        return invitation

    @get("/", summary="The consultation's invitations, oldest first")
    async def list_invitations(
        self, appointment_id: FromPath[uuid.UUID], conn: Conn, principal: Caller
    ) -> InvitationList:
        return InvitationList(items=await manage.list_for(conn, principal, appointment_id))

    @post(
        "/{invitation_id:uuid}/revoke",
        status_code=HTTP_200_OK,
        summary="Revoke an invitation: the link stops working and a guest in the room is removed",
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        appointment_id: FromPath[uuid.UUID],
        invitation_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
    ) -> Invitation:
        revoked = await manage.revoke(conn, principal, appointment_id, invitation_id)
        rooms, bus = request.app.state.rtc_rooms, request.app.state.rtc_bus
        after_commit(request.scope, partial(remove_guest, rooms, bus, appointment_id, invitation_id))
        return revoked


@post(
    "/v1/invitations/open",
    status_code=HTTP_200_OK,
    tags=["realtime"],
    summary="A guest's page opens its invitation link (single use: the first browser keeps it)",
    opt={"exclude_from_auth": True},
)
async def open_invitation(request: Request[Any, Any, Any], data: JSONBody[OpenRequest], conn: Conn) -> Opened:
    """No bearer token: the link's token is the credential, bound here to the browser's key. The
    pair then joins this consultation's call (`guest` on /v1/rtc) and is accepted nowhere else.
    Rate-limited per client address and per link (429 with Retry-After)."""
    await _limit_openings(request, data.token)
    return await guest.open_link(
        conn, request.app.state.pool, data.token, data.device, request_id=request_id_of(request.scope)
    )


OPEN_WINDOW_S = 600


async def _limit_openings(request: Request[Any, Any, Any], token: str) -> None:
    """A public route that looks links up: guessing them, or hammering one, is slowed down. The
    per-address limit is generous, as mobile carriers put many phones behind one address (CGNAT);
    a link is counted by its digest, never stored as such."""
    settings: Settings = request.app.state.settings
    redis = request.app.state.redis
    client = request.client.host if request.client else "unknown"
    link = hashlib.sha256(token.encode()).hexdigest()[:32]
    for bucket, limit, code in (
        (f"invitation_open:ip:{client}", settings.invitation_open_per_ip, "invitation_open_rate_limited_ip"),
        (f"invitation_open:token:{link}", settings.invitation_open_per_token, "invitation_open_rate_limited_link"),
    ):
        retry_after = await over_limit(redis, bucket, limit, OPEN_WINDOW_S)
        if retry_after is not None:
            raise RateLimited(
                code, "too many attempts to open invitation links: try again later", retry_after_s=retry_after
            )
