"""The PostgreSQL pool's look at a connection before handing it out (guidebot.db.engine): one
whose backend the server ended (a restart, an administrator) is replaced, not handed out to
fail its caller's first statement; and a healthy one costs no round trip."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import event, text

from guidebot.db.engine import create_engine
from tests.conftest import _asyncpg_dsn

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def test_a_connection_the_server_ended_is_replaced_at_checkout(database_url):
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
            driver = (await conn.get_raw_connection()).driver_connection
        admin = await asyncpg.connect(_asyncpg_dsn(database_url))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        async with asyncio.timeout(10):  # asyncpg reads the FATAL and the close on the loop
            while not driver.is_closed():  # noqa: ASYNC110 (the driver has no event for it)
                await asyncio.sleep(0.01)

        async with engine.connect() as conn:  # the pool's one connection, ended: replaced
            assert await conn.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await engine.dispose()


async def test_a_healthy_connection_is_handed_out_without_a_round_trip(database_url):
    engine = create_engine(database_url, pool_size=1)
    said: list[str] = []
    try:
        async with engine.connect() as conn:
            await conn.scalar(text("SELECT 1"))
            driver = (await conn.get_raw_connection()).driver_connection
        # What the connection runs from here on besides prepared statements (a pre-ping would
        # add its own BEGIN, ";" and ROLLBACK).
        driver.add_query_logger(lambda record: said.append(record.query))
        started = []
        event.listen(engine.sync_engine, "checkout", lambda *a: started.append(1))
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 2"))
        assert started == [1]
        assert said == ["BEGIN;", "ROLLBACK;"]  # the statement's own transaction, no more
    finally:
        await engine.dispose()
