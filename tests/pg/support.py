"""What the tests that run `guidebot serve` processes on PostgreSQL share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

from tests.conftest import reset_pg
from tests.integration.test_cli import env_for, guidebot

Control = Callable[[str, dict], Awaitable[dict]]


async def fresh_schema(pg_url: str) -> None:
    """An empty database brought up to date by `guidebot db upgrade`, as an operator would."""
    await reset_pg(pg_url)
    result = await asyncio.to_thread(guidebot, "db", "upgrade", env=env_for(pg_url))
    assert result.returncode == 0, result.stdout + result.stderr


def simulator_control(http: aiohttp.ClientSession, sim: str) -> Control:
    """POST to the simulator's control API under /_sim/, insisting on a 200."""

    async def control(path: str, body: dict) -> dict:
        async with http.post(f"{sim}/_sim/{path}", json=body) as response:
            answer = await response.json()
            assert response.status == 200, (path, answer)
            return answer

    return control


async def seed_store(control: Control, guides: list[str]) -> None:
    """Store 11 (张江店) and its guides, named after their userids."""
    await control("departments", {"id": 11, "name": "张江店", "parentid": 1})
    for g in guides:
        await control("users", {"userid": g, "name": f"导购{g}", "department": [11]})
