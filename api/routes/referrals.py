"""Referrals: refer, read, triage; the centre's triage queue and the health post's referrals."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from api.deps import Caller, Conn
from api.schemas import CancelRequest
from domain.referral import service, worklists
from domain.referral.service import Decision, Referral, ReferralIn, ReferralStatus


class ReferralPage(msgspec.Struct, kw_only=True):
    items: list[Referral]


class ReferralController(Controller):
    tags = ["referrals"]

    @post("/v1/referrals", summary="Refer a patient to a reference centre of the network")
    async def refer(self, data: JSONBody[ReferralIn], conn: Conn, principal: Caller) -> Referral:
        return await service.refer(conn, principal, data)

    @get("/v1/referrals/{referral_id:uuid}", summary="Read a referral (referring facility or centre)")
    async def read(self, referral_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Referral:
        return await service.get(conn, principal, referral_id)

    @post(
        "/v1/referrals/{referral_id:uuid}/triage",
        status_code=HTTP_200_OK,
        summary="Accept and book, answer with advice, or decline with a reason",
    )
    async def triage(
        self, referral_id: FromPath[uuid.UUID], data: JSONBody[Decision], conn: Conn, principal: Caller
    ) -> Referral:
        return await service.triage(conn, principal, referral_id, data)

    @post("/v1/referrals/{referral_id:uuid}/cancel", status_code=HTTP_200_OK, summary="Withdraw an untriaged referral")
    async def cancel(
        self,
        referral_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
        data: JSONBody[CancelRequest | None] = None,
    ) -> Referral:
        return await service.cancel(conn, principal, referral_id, data.reason if data else None)

    @post(
        "/v1/referrals/{referral_id:uuid}/acknowledge",
        status_code=HTTP_200_OK,
        summary="The referring facility has read the centre's answer (it leaves the answers waiting)",
    )
    async def acknowledge(self, referral_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Referral:
        return await service.acknowledge(conn, principal, referral_id)

    @get("/v1/facilities/{facility_id:uuid}/triage-queue", summary="Open referrals to a centre, most urgent first")
    async def queue(
        self,
        facility_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> ReferralPage:
        return ReferralPage(items=await worklists.triage_queue(conn, principal, facility_id, limit=limit))

    @get("/v1/facilities/{facility_id:uuid}/referrals", summary="A facility's referrals and their status")
    async def sent(
        self,
        facility_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
        status: FromQuery[ReferralStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
        waiting: Annotated[
            bool, QueryParameter(description="only the centre's answers not yet acknowledged here, oldest first")
        ] = False,
    ) -> ReferralPage:
        return ReferralPage(
            items=await worklists.sent(conn, principal, facility_id, status=status, limit=limit, waiting=waiting)
        )
