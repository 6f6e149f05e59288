"""Several WeComClients sharing the access token through the database credential store.

Each client gets its own engine and store, as separate guidebot instances would, over one
migrated database: a temp-file SQLite always, and PostgreSQL too when
GUIDEBOT_TEST_DATABASE_URL is set (the `database_url` fixture in tests/conftest.py resets the
schema and runs the migrations). WeCom is the simulator, over real HTTP, on a fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest

from guidebot.clock import FakeClock
from guidebot.db.credentials import DatabaseCredentialStore, WeComCredential
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.wecom.client import WeComClient, WeComError
from guidebot.wecom.simulator import SimulatorConfig, create_simulator_app
from tests.support import TEST_IDENTITY
from tests.unit.test_client import START_AT, Sim

TOKEN_NAME = f"access_token:{TEST_IDENTITY.corp_id}:{TEST_IDENTITY.agent_id}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START_AT)


@pytest.fixture
async def sim(aiohttp_server, clock) -> AsyncIterator[Sim]:
    config = SimulatorConfig(identity=TEST_IDENTITY, clock=clock.time)
    server = await aiohttp_server(create_simulator_app(config))
    async with aiohttp.ClientSession() as session:
        sim = Sim(str(server.make_url("")).rstrip("/"), session)
        await sim.seed_guides("alice", "bob")
        yield sim


@pytest.fixture
async def instances(sim, clock, database_url) -> AsyncIterator[Callable[..., Any]]:
    """make(**overrides) -> a client with its own HTTP session, engine and store."""
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> WeComClient:
            engine = create_engine(database_url)
            stack.push_async_callback(engine.dispose)
            session = await stack.enter_async_context(aiohttp.ClientSession())
            options: dict[str, Any] = dict(
                corp_id=TEST_IDENTITY.corp_id,
                secret=TEST_IDENTITY.secret,
                agent_id=TEST_IDENTITY.agent_id,
                api_base=sim.base,
                credentials=DatabaseCredentialStore(create_session_factory(engine)),
                clock=clock,
            )
            options.update(overrides)
            return WeComClient(session, **options)

        yield make


async def stored_token(database_url: str) -> WeComCredential | None:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            return await session.get(WeComCredential, TOKEN_NAME)
    finally:
        await engine.dispose()


async def test_two_instances_fetch_the_token_exactly_once(sim, instances, database_url):
    first, second = await instances(instance_id="one"), await instances(instance_id="two")

    results = await asyncio.gather(
        *(c.user_get(u) for c in (first, second) for u in ("alice", "bob") * 5)
    )

    assert sorted({r["userid"] for r in results}) == ["alice", "bob"]
    assert await sim.count("gettoken") == 1
    assert await sim.count("user/get") == 20
    row = await stored_token(database_url)
    assert row is not None and row.value and row.lease_owner is None  # stored, lease released

    # A third instance starting later reads the shared token instead of fetching its own.
    third = await instances(instance_id="three")
    assert len(await third.department_list()) == 2
    assert await sim.count("gettoken") == 1


async def test_a_revoked_token_is_refreshed_once_across_instances(sim, instances, database_url):
    first, second = await instances(), await instances()
    await first.department_list()
    await second.department_list()
    old = (await stored_token(database_url)).value
    await sim.control("tokens/revoke")

    await asyncio.gather(*(c.user_get("alice") for c in (first, second) for _ in range(10)))

    assert await sim.count("gettoken") == 2
    assert (await stored_token(database_url)).value != old


async def test_an_expired_token_is_refreshed_once_across_instances(sim, instances, clock):
    first, second = await instances(), await instances()
    await first.department_list()
    clock.advance(7200)

    await asyncio.gather(*(c.department_list() for c in (first, second) for _ in range(5)))

    assert await sim.count("gettoken") == 2
    assert 42001 not in [(c["answer"] or {}).get("errcode") for c in await sim.calls()]


async def test_a_failed_refresh_releases_the_lease(sim, instances, database_url):
    broken = await instances(secret="not-the-secret")
    with pytest.raises(WeComError) as caught:
        await broken.department_list()
    assert caught.value.errcode == 40001
    row = await stored_token(database_url)
    assert row is not None and row.lease_owner is None and row.value is None

    # Another instance is not held up by the failed one's lease.
    healthy = await instances()
    assert len(await healthy.department_list()) == 2
    assert await sim.count("gettoken") == 2


async def test_tickets_are_shared_through_the_database(sim, instances, clock):
    first, second = await instances(), await instances()
    jsapi, agent = await asyncio.gather(first.get_jsapi_ticket(), second.get_agent_ticket())
    assert await second.get_jsapi_ticket() == jsapi
    assert await first.get_agent_ticket() == agent
    assert await sim.count("get_jsapi_ticket") == 1
    assert await sim.count("ticket/get") == 1
    assert await sim.count("gettoken") == 1
