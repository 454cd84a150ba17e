"""A reference centre open every day and a health post that refers to it: what a patient needs to
book by USSD from /dev/phone."""

from __future__ import annotations

import pytest

from tests.factory import Factory, Network


@pytest.fixture
async def network(factory: Factory) -> Network:
    return await factory.network("derm")
