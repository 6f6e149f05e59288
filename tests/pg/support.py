"""What the tests that run `guidebot serve` processes on PostgreSQL share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from guidebot.db.migrate import upgrade
from tests.conftest import reset_pg

Control = Callable[[str, dict], Awaitable[dict]]


async def fresh_schema(pg_url: str) -> None:
    """An empty database brought up to date by the migrations `guidebot db upgrade` runs.

    They run in the test's process, where Alembic is loaded already: a `guidebot db upgrade`
    process spent two seconds of CPU starting up. That command on PostgreSQL is the image's
    `migrate` service in tests/pg/test_image.py."""
    await reset_pg(pg_url)
    await upgrade(pg_url)


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
