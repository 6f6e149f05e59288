"""A `guidebot serve` process rides out a PostgreSQL outage under a stream of callbacks.

The server reaches PostgreSQL through a proxy (tests.pg.proxy) the test takes down and brings
back; from the server's side that is a database restart: its backends end with FATAL 57P01,
open connections drop, new ones are refused. The real server is never restarted.

While the database is down every callback is answered 503 (WeCom retries), never 200 for
something not stored, /readyz says not ready, and the process stays up. Once it is back the
callbacks are 200 again without a restart, the inbox worker and the SOP engine carry on, and
every acknowledged event, and every 503'd one WeCom delivers again, is processed exactly once:
one inbox row, one relation, one `added` event, one welcome task and one welcome each.
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
from sqlalchemy.engine import make_url

from tests.conftest import _asyncpg_dsn
from tests.integration.test_cli import (
    env_for,
    start,
    start_simulator,
    stop_all,
    wait_until_up,
)
from tests.pg.proxy import PgProxy
from tests.pg.support import fresh_schema, seed_store, simulator_control
from tests.ports import free_port

pytestmark = pytest.mark.pg

REPO = Path(__file__).resolve().parents[2]
GUIDES = 3
PACE = 0.08  # seconds between two customers adding a guide (about 12 callbacks a second)
BEFORE, DURING, AFTER = 3.0, 5.0, 3.0  # seconds of traffic before, during, after the outage
BACK_WITHIN = 10.0  # seconds for callbacks to be 200 again once the database is back
SETTLE_TIMEOUT = 25.0


async def _db_state(dsn: str) -> dict[str, object]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "inbox": dict(
                await conn.fetch("SELECT status, count(*) FROM inbox_events GROUP BY status")
            ),
            "inbox_customers": Counter(
                r["customer_key"] for r in await conn.fetch("SELECT customer_key FROM inbox_events")
            ),
            "relations": Counter(
                r["external_userid"]
                for r in await conn.fetch("SELECT external_userid FROM relations")
            ),
            "events": Counter(
                (r["kind"], r["external_userid"])
                for r in await conn.fetch("SELECT kind, external_userid FROM relation_events")
            ),
            "welcome_tasks": [
                dict(r)
                for r in await conn.fetch(
                    "SELECT external_userid, status, attempts, reason"
                    " FROM sop_tasks WHERE step_id = 'welcome'"
                )
            ],
        }
    finally:
        await conn.close()


def _settled(state: dict[str, object], expected: int) -> bool:
    inbox = state["inbox"]
    tasks = state["welcome_tasks"]
    return (
        sum(inbox.values()) >= expected
        and set(inbox) <= {"done", "failed"}
        and len(tasks) >= expected
        and all(t["status"] not in ("pending", "claimed", "sending") for t in tasks)
    )


async def test_serve_rides_out_a_postgresql_outage_without_loss_or_duplicates(pg_url, tmp_path):
    await fresh_schema(pg_url)

    dsn = _asyncpg_dsn(pg_url)
    url = make_url(pg_url)
    proxy = PgProxy(url.host or "127.0.0.1", url.port or 5432, free_port())
    proxied_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    sim_port, serve_port = free_port(), free_port()
    sim, api = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{serve_port}"
    env = env_for(proxied_url, GUIDEBOT_WECOM_API_BASE=sim, GUIDEBOT_SOP_DIR=str(REPO / "sop"))
    serve_log, sim_log = tmp_path / "serve.log", tmp_path / "simulator.log"
    processes = []
    await proxy.start()
    started = time.monotonic()
    try:
        simulator = start_simulator(sim_port, f"{api}/wecom/callback", env=env, log=sim_log)
        processes.append(simulator)
        server = start(
            "serve", "--host", "127.0.0.1", "--port", str(serve_port), env=env, log=serve_log
        )
        processes.append(server)
        await wait_until_up(f"{sim}/_sim/calls", simulator)
        await wait_until_up(f"{api}/healthz", server)

        async with aiohttp.ClientSession() as http:
            control = simulator_control(http, sim)

            async def ready() -> int:
                async with http.get(f"{api}/readyz") as response:
                    return response.status

            assert await ready() == 200
            # The outage is what is under test, not the welcome code's 20 s: an event held
            # back by the outage still gets its welcome when it is processed afterwards.
            await control("config", {"welcome_code_ttl": 120})
            guides = [f"g{i}" for i in range(GUIDES)]
            await seed_store(control, guides)

            phase = "before"
            answers: dict[str, tuple[str, dict]] = {}  # customer -> (phase, answer)
            numbers = itertools.count()

            async def add_one() -> None:
                i = next(numbers)
                customer = f"wmout{i:04d}"
                at = phase
                await control("customers", {"external_userid": customer, "name": f"客户{i}"})
                answer = await control(
                    "contact/add",
                    {
                        "userid": guides[i % GUIDES],
                        "external_userid": customer,
                        "welcome_code": True,
                    },
                )
                # An add that began and ended in one phase saw only that phase.
                answers[customer] = (at if phase == at else "across", answer)

            async def stream(until: asyncio.Event) -> None:
                pending: set[asyncio.Task[None]] = set()
                while not until.is_set():
                    task = asyncio.create_task(add_one())
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    await asyncio.sleep(PACE)
                if pending:
                    await asyncio.gather(*pending)

            stop_stream = asyncio.Event()
            traffic = asyncio.create_task(stream(stop_stream))
            await asyncio.sleep(BEFORE)

            # ---- the database goes down -------------------------------------------------------
            phase = "going down"  # a commit on a still-open connection may yet succeed
            terminated = await proxy.go_down(admin_dsn=dsn)
            phase = "down"
            assert terminated > 0, "the server held no connection to terminate"
            readiness_down = []
            down_until = time.monotonic() + DURING
            while time.monotonic() < down_until:
                readiness_down.append(await ready())
                assert server.poll() is None, serve_log.read_text()[-3000:]
                await asyncio.sleep(0.5)

            # ---- the database is back ---------------------------------------------------------
            phase = "coming back"
            await proxy.come_back()
            back_at = time.monotonic()
            while await ready() != 200:
                assert time.monotonic() - back_at < BACK_WITHIN, "readyz never ready again"
                await asyncio.sleep(0.2)
            ready_after = time.monotonic() - back_at
            phase = "ready"
            await asyncio.sleep(AFTER)
            stop_stream.set()
            await traffic
            assert server.poll() is None, serve_log.read_text()[-3000:]

            # What was acknowledged is all in the inbox already, before any redelivery.
            state = await _db_state(dsn)
            acknowledged = {
                c for c, (_, a) in answers.items() if any(t["status"] == 200 for t in a["attempts"])
            }
            never_stored = acknowledged - set(state["inbox_customers"])

            # WeCom gave up on the callbacks answered 503 three times; deliver them again, as
            # WeCom's next retry (or a reconciliation) would: the same plaintext, re-encrypted.
            async with http.get(f"{sim}/_sim/deliveries") as response:
                deliveries = (await response.json())["deliveries"]
            undelivered = [d for d in deliveries if not d["result"]["delivered"]]
            redelivered = []
            for d in undelivered:
                answer = await control("callbacks", {"xml": d["plaintext"]})
                redelivered.append(answer)

            deadline = time.monotonic() + SETTLE_TIMEOUT
            while True:
                state = await _db_state(dsn)
                if _settled(state, len(answers)) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)

            async with http.get(f"{sim}/_sim/welcomes") as response:
                welcomes = (await response.json())["welcomes"]
            async with http.get(
                f"{sim}/_sim/calls", params={"api": "externalcontact/send_welcome_msg"}
            ) as response:
                welcome_calls = (await response.json())["calls"]
        assert server.poll() is None, serve_log.read_text()[-3000:]
        server.terminate()  # and it still shuts down cleanly, and promptly
        stopping = time.monotonic()
        assert await asyncio.to_thread(server.wait, 20) == 0, serve_log.read_text()[-3000:]
        shutdown_seconds = time.monotonic() - stopping
    finally:
        # The proxy runs on this loop, and the server closes its database connections
        # through it on the way out: stop_all waits off the loop.
        await stop_all(processes)
        await proxy.stop()
    elapsed = time.monotonic() - started
    log_tail = "\n".join(
        line[:300]
        for line in serve_log.read_text().splitlines()
        if " ERROR " in line or " WARNING " in line or " CRITICAL " in line
    )[-4000:]

    customers = sorted(answers)
    statuses = Counter(t["status"] for _, a in answers.values() for t in a["attempts"])
    by_phase = {
        p: Counter(t["status"] for at, a in answers.values() if at == p for t in a["attempts"])
        for p in ("before", "down", "ready", "across")
    }
    # Callbacks were answered 200 or 503, never 500, never left hanging.
    assert set(statuses) <= {200, 503}, (statuses, log_tail)
    assert by_phase["down"][503] > 0, by_phase  # the outage really was seen
    assert by_phase["down"][200] == 0, (by_phase, log_tail)
    # Ready again: every callback is acknowledged at the first try, no restart needed.
    assert by_phase["ready"][200] > 0 and set(by_phase["ready"]) == {200}, by_phase
    assert by_phase["before"] == Counter({200: by_phase["before"][200]}), by_phase
    # Answered 200 means stored: nothing acknowledged is missing from the inbox.
    assert not never_stored, sorted(never_stored)
    # Not ready while down, ready again without a restart.
    assert readiness_down and set(readiness_down) == {503}, readiness_down
    assert ready_after < BACK_WITHIN
    # The redelivered callbacks were accepted now.
    assert undelivered, "no callback was refused during the outage"
    assert len(undelivered) == sum(not a["delivered"] for _, a in answers.values())
    assert all(a["delivered"] and a["attempts"][0]["status"] == 200 for a in redelivered), [
        a for a in redelivered if not a["delivered"] or a["attempts"][0]["status"] != 200
    ]

    # Every event stored once and processed once: no loss, no duplicate.
    once = Counter({c: 1 for c in customers})
    assert state["inbox"] == {"done": len(customers)}, (state["inbox"], log_tail)
    assert state["inbox_customers"] == once, state["inbox_customers"]
    assert state["relations"] == once, state["relations"]
    assert state["events"] == Counter({("added", c): 1 for c in customers}), state["events"]
    tasks = state["welcome_tasks"]
    assert Counter(t["external_userid"] for t in tasks) == once, tasks
    assert [t for t in tasks if t["status"] != "sent"] == [], log_tail
    assert Counter(w["external_userid"] for w in welcomes) == once, welcomes
    assert len(welcome_calls) == len(customers), Counter(c.get("errcode") for c in welcome_calls)
    assert shutdown_seconds < 5, shutdown_seconds
    assert elapsed < 40, elapsed
