"""HTTP side of the pre-call check: a participant's or a guest's page sends its WebRTC offer and
gets the answer of an echo peer (realtime.echo). A guest, who has no access token, also gets the
deployment's STUN/TURN servers here, with the credential of their opened link.

Outside the request transaction: answering takes a moment (ICE gathering), and the database is
needed only for the brief check of who is asking.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from api.transaction import NO_TRANSACTION
from domain.booking import consultation
from domain.invitations import guest
from domain.principal import Principal
from realtime.echo import EchoPeers
from realtime.invitations import BrowserKey, Secret
from realtime.turn import IceServers, ice_servers_for

Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=32_768)]


class EchoOffer(msgspec.Struct, kw_only=True):
    appointment_id: uuid.UUID  # the consultation the caller is about to join
    sdp: Sdp  # a complete offer (its ICE candidates gathered: no trickle)


class GuestCredentials(msgspec.Struct, kw_only=True):
    token: Secret
    device: BrowserKey


class GuestEchoOffer(GuestCredentials, kw_only=True):
    sdp: Sdp


class EchoAnswer(msgspec.Struct, kw_only=True):
    sdp: str
    seconds: float  # the echo closes after this long


def _echo(request: Request[Any, Any, Any]) -> EchoPeers:
    echo: EchoPeers = request.app.state.rtc_echo
    return echo


_OPT = {"exclude_from_auth": True, **NO_TRANSACTION}


@post(
    "/v1/rtc/echo",
    status_code=HTTP_200_OK,
    tags=["realtime"],
    summary="Pre-call check: a test call to an echo peer that sends the media back",
    opt=NO_TRANSACTION,
)
async def echo_call(request: Request[Principal, Any, Any], data: JSONBody[EchoOffer]) -> EchoAnswer:
    """For the appointment's participants (patient, booking health worker, specialist), while
    its room is open; through the ICE servers GET /v1/rtc/ice-servers gives the same caller.
    (No `Caller` dependency: that one rides on the request transaction, which this route has not.)"""
    principal, settings = request.user, request.app.state.settings
    async with request.app.state.pool.acquire() as conn:
        await consultation.participant(conn, principal, data.appointment_id)
    echo = _echo(request)
    answer = await echo.answer(data.sdp, ice_servers_for(settings, str(principal.user_id)))
    return EchoAnswer(sdp=answer, seconds=echo.seconds)


@post(
    "/v1/invitations/ice-servers",
    status_code=HTTP_200_OK,
    tags=["realtime"],
    summary="A guest's STUN/TURN servers, for the pre-call check (the opened link is the credential)",
    opt=_OPT,
)
async def guest_ice_servers(request: Request[Any, Any, Any], data: JSONBody[GuestCredentials]) -> IceServers:
    return await _guest_ice_servers(request, data)


@post(
    "/v1/invitations/echo",
    status_code=HTTP_200_OK,
    tags=["realtime"],
    summary="A guest's pre-call check: a test call to an echo peer (the opened link is the credential)",
    opt=_OPT,
)
async def guest_echo_call(request: Request[Any, Any, Any], data: JSONBody[GuestEchoOffer]) -> EchoAnswer:
    ice = await _guest_ice_servers(request, data)
    echo = _echo(request)
    return EchoAnswer(sdp=await echo.answer(data.sdp, ice), seconds=echo.seconds)


async def _guest_ice_servers(request: Request[Any, Any, Any], credentials: GuestCredentials) -> IceServers:
    """The STUN/TURN servers of the guest whose opened link and browser these are (refused as
    guest.identify refuses: a link not opened, opened by another browser, revoked, expired)."""
    async with request.app.state.pool.acquire() as conn:
        who = await guest.identify(conn, credentials.token, credentials.device)
    return ice_servers_for(request.app.state.settings, f"guest:{who.invitation_id}")
