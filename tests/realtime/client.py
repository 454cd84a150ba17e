"""A small signalling client for tests: JSON over a real WebSocket, with typed waits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class Signal:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str) -> Signal:
        return cls(await connect(f"{url}/v1/rtc", max_size=2**22, open_timeout=5))

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def next(self, kind: str | None = None, within: float = 5.0) -> dict[str, Any]:
        """The next message (of `kind`, skipping others)."""
        async with asyncio.timeout(within):
            while True:
                message: dict[str, Any] = json.loads(await self.ws.recv())
                self.seen.append(message)
                if kind is None or message["type"] == kind:
                    return message

    async def join(self, token: str, appointment_id: object, **extra: Any) -> dict[str, Any]:
        await self.send(type="auth", token=token)
        await self.send(type="join", appointment_id=str(appointment_id), **extra)
        return await self.next("ready")

    async def closed_with(self, within: float = 5.0) -> int:
        """Read until the server closes; the close code."""
        try:
            async with asyncio.timeout(within):
                while True:
                    self.seen.append(json.loads(await self.ws.recv()))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else 1006

    async def close(self) -> None:
        await self.ws.close()
