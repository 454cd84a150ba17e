"""Offline sync for the CHW app: pull changes since a cursor, push a batch recorded offline."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from api.deps import Caller, Conn
from api.transaction import ONE_READ
from domain.record import sync
from domain.record.sync import Change, Outcome, Page


class PushIn(msgspec.Struct, kw_only=True):
    changes: Annotated[list[Change], msgspec.Meta(min_length=1, max_length=500)]


class PushOut(msgspec.Struct, kw_only=True):
    results: list[Outcome]


class SyncController(Controller):
    path = "/v1/sync"
    tags = ["sync"]

    # No request transaction: the page, with its audit rows, is one statement (domain.record.sync).
    @get("/", opt=ONE_READ, summary="Record changes of your facility's patients since a cursor")
    async def pull(
        self,
        conn: Conn,
        principal: Caller,
        since: Annotated[str, QueryParameter()] = "0",
        limit: Annotated[int, QueryParameter(ge=1, le=5000)] = 500,
    ) -> Page:
        return await sync.pull(conn, principal, since=since, limit=limit)

    @post("/", status_code=HTTP_200_OK, summary="Apply changes recorded offline, each at most once")
    async def push(self, data: JSONBody[PushIn], conn: Conn, principal: Caller) -> PushOut:
        return PushOut(results=await sync.push(conn, principal, data.changes))
