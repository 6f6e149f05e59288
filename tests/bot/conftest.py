from __future__ import annotations

import pytest

from guidebot.clock import FakeClock
from tests.content.harness import START, ContentHarness, start_harness


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def h(aiohttp_client, database_url, clock, tmp_path) -> ContentHarness:
    return await start_harness(aiohttp_client, database_url, clock, tmp_path)
