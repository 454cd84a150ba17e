"""The transactional outbox: write an event in the same transaction as the change it announces."""

from __future__ import annotations

from typing import Any

from infra.db import Connection


async def enqueue(conn: Connection, topic: str, payload: dict[str, Any]) -> None:
    await conn.execute("INSERT INTO outbox (topic, payload) VALUES ($1, $2)", topic, payload)
