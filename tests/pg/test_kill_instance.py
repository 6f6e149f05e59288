"""kill -9 of one of two `guidebot serve` instances under load loses nothing and repeats nothing.

Two instances, A and B, share one PostgreSQL database behind a tiny load balancer (a
connection error to an upstream is retried on the next one). A simulated WeCom streams
customer adds, each with a WelcomeCode. In the middle of the stream WeCom turns slow for a
few `externalcontact/get` and `send_welcome_msg` calls, so that A holds claimed inbox events
and has welcomes in `sending`, and A is killed with SIGKILL. Callbacks WeCom got no 200 for
are delivered again, as WeCom would.

Afterwards: every callback acknowledged is in the inbox once and `done` (those A had claimed
came back once A's lease lapsed, GUIDEBOT_CLAIM_LEASE_SECONDS, and B processed them); one
relation and one `added` event per customer; at most one welcome per customer and WeCom was
never handed a spent code (no 41051); a welcome A left in `sending` was never sent again and
is settled `unknown` by the reconciliation (run here with the clock past SEND_LEASE, as B
would run it minutes later); every welcome task ends sent, unknown or expired; B still runs.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from guidebot.clock import SystemClock
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.sop.context import SopRuntime
from guidebot.sop.prepare import SEND_LEASE
from guidebot.sop.reconcile import reconcile_sending
from guidebot.sop.registry import load_registry
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
from tests.support import make_settings

pytestmark = pytest.mark.pg

REPO = Path(__file__).resolve().parents[2]
GUIDES = 3
CUSTOMERS = 60
PACE = 0.1  # seconds between two customers adding a guide
KILL_AFTER = 2.0  # seconds into the stream WeCom slows down (and A is killed soon after)
LEASE = 4  # GUIDEBOT_CLAIM_LEASE_SECONDS for both instances
# Seconds a slowed WeCom call takes (under the client's 10 s timeout).
SLOW_WELCOME, SLOW_GET = 6.0, 3.0
SLOW_CALLS = 8  # per API
KILL_WITHIN = 8.0  # seconds to wait for each condition before killing A anyway
SETTLE_TIMEOUT = 20.0
WELCOME_API = "externalcontact/send_welcome_msg"


class FailoverFront:
    """A load balancer in miniature: round robin, and a request that meets a connection error
    (refused by a dead upstream, or cut off by one dying) is retried on the next upstream."""

    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = upstreams
        self.turn = itertools.count()
        self.answers: Counter[tuple[int, int]] = Counter()  # (upstream index, status)
        self.failovers: Counter[int] = Counter()  # upstream index that failed
        self.session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/wecom/callback", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        query, body = request.query_string, await request.read()
        assert self.session is not None
        first = next(self.turn)
        for n in range(len(self.upstreams)):
            index = (first + n) % len(self.upstreams)
            try:
                async with self.session.post(
                    f"{self.upstreams[index]}/wecom/callback?{query}",
                    data=body,
                    headers={"Content-Type": "text/xml; charset=utf-8"},
                ) as response:
                    payload = await response.read()
            except aiohttp.ClientConnectionError:
                self.failovers[index] += 1
                continue
            self.answers[(index, response.status)] += 1
            return web.Response(status=response.status, body=payload)
        return web.Response(status=502, text="no upstream answered")


async def _db_state(dsn: str) -> dict[str, object]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "inbox": {
                r["id"]: dict(r)
                for r in await conn.fetch(
                    "SELECT id, customer_key, kind, status, attempts, lease_owner, lease_until,"
                    " processed_at FROM inbox_events"
                )
            },
            "relations": Counter(
                r["external_userid"]
                for r in await conn.fetch("SELECT external_userid FROM relations")
            ),
            "events": Counter(
                (r["kind"], r["external_userid"])
                for r in await conn.fetch("SELECT kind, external_userid FROM relation_events")
            ),
            "welcome_tasks": {
                r["id"]: dict(r)
                for r in await conn.fetch(
                    "SELECT id, external_userid, status, attempts, lease_owner, claimed_by,"
                    " reason FROM sop_tasks WHERE step_id = 'welcome'"
                )
            },
        }
    finally:
        await conn.close()


def _owned_by(owner: str | None, pid: int) -> bool:
    # Claimers, SOP and inbox alike, are named host:pid:random (guidebot.db.queue.claim_owner).
    return owner is not None and f":{pid}:" in owner


def _settled(state: dict[str, object], a_pid: int) -> bool:
    inbox = state["inbox"].values()
    tasks = state["welcome_tasks"].values()
    return (
        len(inbox) >= CUSTOMERS
        and all(e["status"] in ("done", "failed") for e in inbox)
        and len(tasks) >= CUSTOMERS
        # Only A's own `sending` rows may still wait: SEND_LEASE (minutes) is not shortened.
        and all(
            t["status"] not in ("pending", "claimed", "sending")
            or (t["status"] == "sending" and _owned_by(t["lease_owner"], a_pid))
            for t in tasks
        )
    )


async def test_kill_9_of_one_instance_under_load_loses_nothing_and_repeats_nothing(
    pg_url, tmp_path
):
    await fresh_schema(pg_url)

    dsn = _asyncpg_dsn(pg_url)
    sim_port, front_port, a_port, b_port = (free_port() for _ in range(4))
    sim = f"http://127.0.0.1:{sim_port}"
    upstreams = [f"http://127.0.0.1:{a_port}", f"http://127.0.0.1:{b_port}"]
    env = env_for(
        pg_url,
        GUIDEBOT_WECOM_API_BASE=sim,
        GUIDEBOT_SOP_DIR=str(REPO / "sop"),
        GUIDEBOT_CLAIM_LEASE_SECONDS=str(LEASE),
    )
    front = FailoverFront(upstreams)
    runner = web.AppRunner(front.app())
    logs = {name: tmp_path / f"{name}.log" for name in ("simulator", "a", "b")}
    processes: list = []
    started = time.monotonic()
    try:
        simulator = start_simulator(
            sim_port,
            f"http://127.0.0.1:{front_port}/wecom/callback",
            env=env,
            log=logs["simulator"],
        )
        processes.append(simulator)
        a, b = (
            start("serve", "--host", "127.0.0.1", "--port", str(port), env=env, log=logs[name])
            for name, port in (("a", a_port), ("b", b_port))
        )
        processes += [a, b]
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", front_port).start()
        await wait_until_up(f"{sim}/_sim/calls", simulator)
        await wait_until_up(f"{upstreams[0]}/healthz", a)
        await wait_until_up(f"{upstreams[1]}/healthz", b)

        async with aiohttp.ClientSession() as http:
            front.session = http

            control = simulator_control(http, sim)

            async def sim_get(path: str, key: str, **params: str) -> list:
                async with http.get(f"{sim}/_sim/{path}", params=params) as response:
                    return (await response.json())[key]

            guides = [f"g{i}" for i in range(GUIDES)]
            await seed_store(control, guides)
            customers = [f"wmkill{i:03d}" for i in range(CUSTOMERS)]
            for c in customers:
                await control("customers", {"external_userid": c, "name": f"客户{c[-3:]}"})

            answers: dict[str, dict] = {}

            async def add(i: int) -> None:
                answers[customers[i]] = await control(
                    "contact/add",
                    {
                        "userid": guides[i % GUIDES],
                        "external_userid": customers[i],
                        "welcome_code": True,
                    },
                )

            async def stream() -> None:
                adds = []
                for i in range(CUSTOMERS):
                    adds.append(asyncio.create_task(add(i)))
                    await asyncio.sleep(PACE)
                await asyncio.gather(*adds)

            traffic = asyncio.create_task(stream())
            await asyncio.sleep(KILL_AFTER)

            # ---- WeCom slows down: A ends up mid-welcome and holding claimed events ----------
            # First the welcomes (long enough to be in flight at the kill), then the profile
            # fetches of the next adds, inside the inbox worker's claim.
            await control(
                "faults", {"api": WELCOME_API, "latency": SLOW_WELCOME, "times": SLOW_CALLS}
            )
            a_sending: list[dict] = []
            owners: set[str] = set()
            wait_until = time.monotonic() + KILL_WITHIN
            while not a_sending and time.monotonic() < wait_until:
                state = await _db_state(dsn)
                a_sending = [
                    t
                    for t in state["welcome_tasks"].values()
                    if t["status"] == "sending" and _owned_by(t["lease_owner"], a.pid)
                ]
                await asyncio.sleep(0.05)
            await control(
                "faults", {"api": "externalcontact/get", "latency": SLOW_GET, "times": SLOW_CALLS}
            )
            wait_until = time.monotonic() + KILL_WITHIN
            while time.monotonic() < wait_until:
                # Kill A when one look at the database finds it both holding inbox claims (its
                # profile fetches are slow now) and still mid-welcome: on a loaded machine the
                # first slowed welcome may have ended before the claims show, but the next
                # adds' welcomes are slowed too.
                state = await _db_state(dsn)
                owners = {
                    e["lease_owner"] for e in state["inbox"].values() if e["status"] == "processing"
                }
                still_sending = [
                    t
                    for t in state["welcome_tasks"].values()
                    if t["status"] == "sending" and _owned_by(t["lease_owner"], a.pid)
                ]
                if still_sending and any(_owned_by(o, a.pid) for o in owners):
                    break
                await asyncio.sleep(0.05)

            # ---- kill -9 A ----------------------------------------------------------------------
            a.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(a.wait, 10) == -signal.SIGKILL
            killed_at = datetime.now(UTC)
            at_kill = await _db_state(dsn)  # what A held is frozen now
            await traffic
            assert b.poll() is None, logs["b"].read_text()[-3000:]

            # WeCom retries a callback that got no 200 (three tries); one that never got a
            # 200 is delivered again later, as WeCom's next retry would: same plaintext.
            deliveries = await sim_get("deliveries", "deliveries")
            undelivered = [d for d in deliveries if not d["result"]["delivered"]]
            redelivered = [await control("callbacks", {"xml": d["plaintext"]}) for d in undelivered]

            deadline = time.monotonic() + SETTLE_TIMEOUT
            while True:
                state = await _db_state(dsn)
                if _settled(state, a.pid) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
            settled_after = (datetime.now(UTC) - killed_at).total_seconds()
            assert b.poll() is None, logs["b"].read_text()[-3000:]

            # Minutes later B's sop-reconcile settles what A left in `sending`; run it now with
            # the clock past SEND_LEASE. A welcome is settled without asking WeCom.
            engine = create_engine(pg_url, pool_size=2)
            try:
                settings = make_settings(pg_url, sop_dir=str(REPO / "sop"))
                runtime = SopRuntime(
                    create_session_factory(engine),
                    None,  # type: ignore[arg-type]
                    SystemClock(),
                    settings,
                    load_registry(settings.sop_dir),
                )
                later = datetime.now(UTC) + SEND_LEASE + timedelta(minutes=1)
                reconciled = await reconcile_sending(runtime, later)
            finally:
                await engine.dispose()
            final = await _db_state(dsn)

            # WeCom finishes a call whose caller died (A's slowed welcome): wait for it.
            while True:
                welcome_calls = await sim_get("calls", "calls", api=WELCOME_API)
                if all(c["answer"] is not None for c in welcome_calls):
                    break
                assert time.monotonic() < deadline + SLOW_WELCOME, welcome_calls
                await asyncio.sleep(0.1)
            welcomes = await sim_get("welcomes", "welcomes")
        assert b.poll() is None, logs["b"].read_text()[-3000:]
    finally:
        await runner.cleanup()
        await stop_all(processes)
    elapsed = time.monotonic() - started
    log_tail = "\n".join(
        line[:300]
        for name in ("a", "b")
        for line in logs[name].read_text().splitlines()
        if " ERROR " in line or " CRITICAL " in line or "Traceback" in line
    )[-4000:]

    # The scenario happened: A died holding inbox claims and mid-welcome, and the front
    # failed over from it.
    assert a_sending, "A never had a welcome in `sending` before it was killed"
    # What A held when it died (read after the kill: A can commit nothing more). B's own
    # claims at that moment are B's to finish, not a recovery.
    held_at_kill = {
        i: e
        for i, e in at_kill["inbox"].items()
        if e["status"] == "processing" and _owned_by(e["lease_owner"], a.pid)
    }
    assert held_at_kill, ("A held no inbox claim when it was killed", owners)
    assert front.failovers[0] > 0, front.failovers
    assert front.answers[(1, 200)] > 0 and front.answers[(0, 200)] > 0, front.answers
    assert set(status for _, status in front.answers) <= {200, 503}, front.answers

    # Every add was acknowledged, at the first delivery or the redelivery.
    assert sorted(answers) == customers
    assert all(r["delivered"] and r["attempts"][-1]["status"] == 200 for r in redelivered), (
        redelivered
    )
    assert len(undelivered) == sum(not answers[c]["delivered"] for c in customers)

    # Every acknowledged event is in the inbox once and done, including A's claims: those
    # came back once A's lease lapsed (claimed again, processed by B after lease_until).
    once = Counter({c: 1 for c in customers})
    inbox = final["inbox"]
    assert Counter(e["customer_key"] for e in inbox.values()) == once, inbox
    assert {e["kind"] for e in inbox.values()} == {"add_external_contact"}
    assert [e for e in inbox.values() if e["status"] != "done"] == [], log_tail
    came_back = {
        i: inbox[i] for i, e in held_at_kill.items() if inbox[i]["attempts"] > e["attempts"]
    }
    assert came_back.keys() == held_at_kill.keys(), (held_at_kill, inbox)
    for i, e in came_back.items():
        assert e["processed_at"] >= held_at_kill[i]["lease_until"], (held_at_kill[i], e)

    # One relation and one `added` event per customer, nothing else.
    assert final["relations"] == once, final["relations"]
    assert final["events"] == Counter({("added", c): 1 for c in customers}), final["events"]

    # At most one welcome per customer; WeCom never saw a code twice, nor a spent one.
    assert max(Counter(w["external_userid"] for w in welcomes).values()) == 1, welcomes
    codes = Counter((c["body"] or {}).get("welcome_code") for c in welcome_calls)
    assert max(codes.values()) == 1, [c for c, n in codes.items() if n > 1]
    errcodes = Counter((c["answer"] or {}).get("errcode") for c in welcome_calls)
    assert 41051 not in errcodes, errcodes

    # One welcome task per customer; each ends sent, unknown or expired. A's `sending`
    # rows were never claimed again: settled `unknown` by the reconciliation, not resent.
    tasks = final["welcome_tasks"]
    assert Counter(t["external_userid"] for t in tasks.values()) == once, tasks
    statuses = Counter(t["status"] for t in tasks.values())
    assert set(statuses) <= {"sent", "unknown", "expired"}, (statuses, log_tail)
    left_sending = {
        i
        for i, t in at_kill["welcome_tasks"].items()
        if t["status"] == "sending" and _owned_by(t["lease_owner"], a.pid)
    }
    assert left_sending, at_kill["welcome_tasks"]
    assert {i for i, t in state["welcome_tasks"].items() if t["status"] == "sending"} == (
        left_sending
    )
    assert reconciled.unknown == len(left_sending), reconciled
    welcomed = Counter(w["external_userid"] for w in welcomes)
    for i in left_sending:
        assert tasks[i]["status"] == "unknown", tasks[i]
        # WeCom did deliver it (the call outlived A), and nobody sent it again.
        assert welcomed[tasks[i]["external_userid"]] == 1, tasks[i]
        assert tasks[i]["attempts"] == at_kill["welcome_tasks"][i]["attempts"], tasks[i]
    for t in tasks.values():
        if t["status"] == "sent":
            assert welcomed[t["external_userid"]] == 1, t
        elif t["status"] == "expired":
            assert welcomed[t["external_userid"]] == 0, t
    assert statuses["sent"] >= CUSTOMERS - len(left_sending) - SLOW_CALLS, statuses

    assert settled_after < SETTLE_TIMEOUT, settled_after
    assert elapsed < 40, elapsed
