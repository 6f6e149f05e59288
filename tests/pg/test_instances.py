"""Three `guidebot serve` processes on one PostgreSQL database behave as one guidebot.

One simulated WeCom delivers a stream of `add_external_contact` callbacks (each with a
WelcomeCode) through a tiny round-robin front, as a load balancer would. Some callbacks reach
two instances at once (WeCom's retry racing the first try) and some are delivered again later.
Afterwards every event was processed once, every customer has one relation and one `added`
event, every customer got exactly one welcome from a task sent once, and the access token was
fetched once for all three instances (it is shared through the database).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.conftest import _asyncpg_dsn
from tests.integration.test_cli import (
    env_for,
    start,
    start_simulator,
    stop_all,
    wait_until_up,
)
from tests.pg.support import fresh_schema, seed_store, simulator_control
from tests.ports import free_port

pytestmark = pytest.mark.pg

REPO = Path(__file__).resolve().parents[2]
INSTANCES = 3
GUIDES = 6
CUSTOMERS = 60
GROUP = 10  # adds in flight at once
SETTLE_TIMEOUT = 30.0


class RoundRobinFront:
    """A load balancer in miniature: each POST /wecom/callback goes to the next instance.

    Every third request is also sent to the following instance at the same moment (a
    duplicate delivery racing the original); every request is recorded for later replay.
    """

    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = upstreams
        self.turn = itertools.count()
        self.requests: list[tuple[str, bytes]] = []  # (query string, body)
        self.answers: Counter[int] = Counter()
        self.session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/wecom/callback", self.handle)
        return app

    async def forward(self, query: str, body: bytes) -> tuple[int, bytes]:
        upstream = self.upstreams[next(self.turn) % len(self.upstreams)]
        assert self.session is not None
        async with self.session.post(
            f"{upstream}/wecom/callback?{query}",
            data=body,
            headers={"Content-Type": "text/xml; charset=utf-8"},
        ) as response:
            payload = await response.read()
            self.answers[response.status] += 1
            return response.status, payload

    async def handle(self, request: web.Request) -> web.Response:
        query, body = request.query_string, await request.read()
        self.requests.append((query, body))
        if len(self.requests) % 3 == 0:
            (status, payload), _ = await asyncio.gather(
                self.forward(query, body), self.forward(query, body)
            )
        else:
            status, payload = await self.forward(query, body)
        return web.Response(status=status, body=payload)


async def _db_state(dsn: str) -> dict[str, object]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "inbox": dict(
                await conn.fetch("SELECT status, count(*) FROM inbox_events GROUP BY status")
            ),
            "inbox_kinds": dict(
                await conn.fetch("SELECT kind, count(*) FROM inbox_events GROUP BY kind")
            ),
            "relations": Counter(
                r["external_userid"]
                for r in await conn.fetch("SELECT external_userid FROM relations")
            ),
            "added": Counter(
                r["external_userid"]
                for r in await conn.fetch(
                    "SELECT external_userid FROM relation_events WHERE kind = 'added'"
                )
            ),
            "events": dict(
                await conn.fetch("SELECT kind, count(*) FROM relation_events GROUP BY kind")
            ),
            "welcome_tasks": [
                dict(r)
                for r in await conn.fetch(
                    "SELECT external_userid, status, attempts, claimed_by, reason"
                    " FROM sop_tasks WHERE step_id = 'welcome'"
                )
            ],
        }
    finally:
        await conn.close()


def _settled(state: dict[str, object]) -> bool:
    inbox = state["inbox"]
    tasks = state["welcome_tasks"]
    return (
        sum(inbox.values()) > 0
        and set(inbox) <= {"done", "failed"}
        and len(tasks) >= CUSTOMERS
        and all(t["status"] not in ("pending", "claimed", "sending") for t in tasks)
    )


async def test_three_instances_on_one_postgresql_process_everything_once(pg_url, tmp_path):
    await fresh_schema(pg_url)

    sim_port, front_port = free_port(), free_port()
    ports = [free_port() for _ in range(INSTANCES)]
    sim = f"http://127.0.0.1:{sim_port}"
    upstreams = [f"http://127.0.0.1:{p}" for p in ports]
    env = env_for(
        pg_url,
        GUIDEBOT_WECOM_API_BASE=sim,
        GUIDEBOT_SOP_DIR=str(REPO / "sop"),
    )
    front = RoundRobinFront(upstreams)
    runner = web.AppRunner(front.app())
    processes = []
    logs = [tmp_path / "simulator.log", *(tmp_path / f"serve{i}.log" for i in range(INSTANCES))]
    started = time.monotonic()
    try:
        simulator = start_simulator(
            sim_port, f"http://127.0.0.1:{front_port}/wecom/callback", env=env, log=logs[0]
        )
        processes.append(simulator)
        for i, port in enumerate(ports):
            processes.append(
                start(
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    env=env,
                    log=logs[i + 1],
                )
            )
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", front_port).start()

        await wait_until_up(f"{sim}/_sim/calls", simulator)
        for upstream, process in zip(upstreams, processes[1:], strict=True):
            await wait_until_up(f"{upstream}/healthz", process)

        async with aiohttp.ClientSession() as http:
            front.session = http

            control = simulator_control(http, sim)

            guides = [f"g{i}" for i in range(GUIDES)]
            await seed_store(control, guides)
            customers = [f"wmmulti{i:03d}" for i in range(CUSTOMERS)]
            for c in customers:
                await control("customers", {"external_userid": c, "name": f"客户{c[-3:]}"})

            async def add(i: int, customer: str) -> dict:
                return await control(
                    "contact/add",
                    {
                        "userid": guides[i % GUIDES],
                        "external_userid": customer,
                        "welcome_code": True,
                    },
                )

            for offset in range(0, CUSTOMERS, GROUP):
                answers = await asyncio.gather(
                    *(add(offset + j, c) for j, c in enumerate(customers[offset : offset + GROUP]))
                )
                for answer in answers:
                    assert answer["delivered"] is True, answer
                    assert answer["attempts"][0]["status"] == 200, answer  # no WeCom retry

            # WeCom delivers some events again a little later, each to whichever instance.
            for query, body in front.requests[::4]:
                status, _ = await front.forward(query, body)
                assert status == 200

            deadline = time.monotonic() + SETTLE_TIMEOUT
            dsn = _asyncpg_dsn(pg_url)
            while True:
                state = await _db_state(dsn)
                if _settled(state) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)

            async with http.get(f"{sim}/_sim/welcomes") as response:
                welcomes = (await response.json())["welcomes"]
            async with http.get(f"{sim}/_sim/calls", params={"api": "gettoken"}) as response:
                token_calls = (await response.json())["calls"]
            async with http.get(
                f"{sim}/_sim/calls", params={"api": "externalcontact/send_welcome_msg"}
            ) as response:
                welcome_calls = (await response.json())["calls"]

        for process, log in zip(processes, logs, strict=True):
            assert process.poll() is None, (
                f"{process.args} exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
    finally:
        await runner.cleanup()
        await stop_all(processes)
    elapsed = time.monotonic() - started

    # Every acknowledged event was stored once (content dedupe across instances) and processed.
    assert state["inbox"] == {"done": CUSTOMERS}, state["inbox"]
    assert state["inbox_kinds"] == {"add_external_contact": CUSTOMERS}, state["inbox_kinds"]
    # One relation and one `added` event per customer, nothing else.
    assert state["relations"] == Counter({c: 1 for c in customers}), state["relations"]
    assert state["added"] == Counter({c: 1 for c in customers}), state["added"]
    assert state["events"] == {"added": CUSTOMERS}, state["events"]
    # Exactly one welcome per customer, from one task sent once.
    tasks = state["welcome_tasks"]
    assert sorted(t["external_userid"] for t in tasks) == customers, tasks
    assert {t["status"] for t in tasks} == {"sent"}, [t for t in tasks if t["status"] != "sent"]
    assert all(t["attempts"] == 1 for t in tasks), [t for t in tasks if t["attempts"] != 1]
    assert Counter(w["external_userid"] for w in welcomes) == Counter(customers), welcomes
    assert len(welcome_calls) == CUSTOMERS, Counter(c.get("errcode") for c in welcome_calls)
    # The work really was spread over the three instances.
    assert len({t["claimed_by"] for t in tasks}) > 1, {t["claimed_by"] for t in tasks}
    # The three start-up directory syncs took turns instead of colliding on a key.
    for log in logs[1:]:
        assert "directory sync failed" not in log.read_text(), log.read_text()[-2000:]
    # One access token, fetched once, shared by all three through the database.
    assert len(token_calls) == 1, token_calls
    assert elapsed < 60, elapsed
