"""The worker's CPU and statements for an add and a delete, in one process (issue 14's path).

`python -m bench.add_path [--events N] [--database-url URL]`: guidebot and the simulated WeCom
run in this one process on a fake clock (the app with its workers stopped, as the tests run it),
one store of 10 guides, the shipped playbooks. Four kinds of event are queued through the
simulator, N of each, and the inbox worker drains each kind while this process's CPU time
(`time.process_time`) and the engine's statements are counted:

- `unhandled`: an event no domain handles (the worker's own floor: claim, parse, done-mark);
- `first-seen`: a guide's customer, never seen before, deleting the guide (bench.callbacks'
  `--event deleted`: the pair recorded as ended, with the customer, its log line and the lost
  alert; no WeCom call);
- `add`: a customer adding a guide with a WelcomeCode: the pair recorded, the enrollments and
  their tasks, the stage, and the welcome sent (the welcome lane and the simulator's answers to
  the profile read and send_welcome_msg are in the figure: they run in this process);
- `delete`: each of those customers deleting the guide again.

It prints CPU and statements per event of each kind (how many SQLAlchemy ran and how many ran on
SQLite's driver, guidebot.db.direct) and, last, `ratio=` an add's CPU over an unhandled event's,
measured in the same run. Less noisy than `bench.welcome` on a shared machine (no other process
and no real-time pacing), and quick: a change to the add path shows here first. Keep N in the
hundreds: in the thousands the WeCom call scheduler's pacing, which sleeps on the fake clock,
carries the clock past later adds' profile deadlines, and those adds skip the read (logged).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event

from bench.callbacks import EVENTS
from bench.callbacks import IDENTITY as BENCH_CORP
from guidebot.app import create_app
from guidebot.clock import FakeClock
from guidebot.config import Settings, WeComIdentity
from guidebot.db.migrate import upgrade_sync
from guidebot.web.keys import INBOX_WORKER, SESSIONS
from guidebot.web.startup import CONTACTS_STARTUP
from guidebot.wecom.simulator import SimulatorConfig, create_simulator_app

# The benchmarks' corp (bench.callbacks), as the server would read it from its environment.
IDENTITY = WeComIdentity.from_env(BENCH_CORP)
START = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai: inside every send window
GUIDES = 10
FIRST_SEEN = 500_000  # the first-seen deletes' customers, numbered apart from the adds'
# A change_external_contact around bench.callbacks' events (guides gbenchNN, customers
# wmbenchNNNNNNNN, as there).
ENVELOPE = (
    "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
    "<CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
    "<Event><![CDATA[change_external_contact]]></Event>{fields}</xml>"
)


class Corp:
    """The simulator and guidebot, in this process, and what the benchmark does with them."""

    def __init__(self, sim: TestClient, app: TestClient, clock: FakeClock) -> None:
        self.sim, self.app, self.clock = sim, app, clock

    async def control(self, path: str, payload: dict) -> dict:
        response = await self.sim.post(f"/_sim/{path}", json=payload)
        answer = await response.json()
        if response.status != 200:
            raise RuntimeError(f"/_sim/{path}: {response.status} {answer}")
        return answer

    async def deliver(self, kind: str, numbers: range) -> None:
        """One bench.callbacks callback of `kind` for each number (guide, customer), queued
        through the simulator."""
        at = int(self.clock.time())
        for i in numbers:
            fields = EVENTS[kind].format(g=i % GUIDES, i=i)
            xml = ENVELOPE.format(corp=IDENTITY.corp_id, at=at, fields=fields)
            await self.control("callbacks", {"xml": xml})

    async def drain(self) -> tuple[float, Counter]:
        """Drain the inbox and wait for the work after its commits: (CPU seconds, statements
        by who ran them)."""
        worker = self.app.server.app[INBOX_WORKER]
        engine = self.app.server.app[SESSIONS].kw["bind"].sync_engine
        ran: Counter = Counter()

        def count(conn, cursor, statement, parameters, context, executemany):
            ran["sqlalchemy" if context is not None else "driver"] += 1

        event.listen(engine, "before_cursor_execute", count)
        try:
            started = time.process_time()
            await worker.drain()
            await worker.settle()
            return time.process_time() - started, ran
        finally:
            event.remove(engine, "before_cursor_execute", count)


async def start(database_url: str) -> Corp:
    clock = FakeClock(START, real_share=0)
    sim = TestClient(
        TestServer(create_simulator_app(SimulatorConfig(identity=IDENTITY, clock=clock.time)))
    )
    await sim.start_server()
    settings = Settings.from_env(
        {
            **BENCH_CORP,
            "GUIDEBOT_DATABASE_URL": database_url,
            "GUIDEBOT_WECOM_API_BASE": str(sim.make_url("/")).rstrip("/"),
        }
    )
    app = TestClient(TestServer(create_app(settings, clock=clock, run_workers=False)))
    corp = Corp(sim, app, clock)
    await corp.control("departments", {"id": 10, "name": "华东", "parentid": 1})
    await corp.control("departments", {"id": 11, "name": "张江店", "parentid": 10})
    for g in range(GUIDES):
        body = {"userid": f"gbench{g:02d}", "name": f"导购{g:02d}", "department": [11]}
        await corp.control("users", body)
    await app.start_server()
    await corp.control("config", {"callback_url": str(app.make_url("/wecom/callback"))})
    await app.server.app[CONTACTS_STARTUP]  # the start-up directory sync
    return corp


async def measure(corp: Corp, events: int, first: int) -> dict[str, tuple[float, Counter]]:
    """Each kind queued, then drained and counted; customers numbered from `first`."""
    numbers = range(first, first + events)
    pairs = [(f"gbench{i % GUIDES:02d}", f"wmbench{i:08d}") for i in numbers]
    for _, ext in pairs:
        await corp.control("customers", {"external_userid": ext, "name": f"顾客{ext[-4:]}"})
    figures = {}
    await corp.deliver("unhandled", numbers)
    figures["unhandled"] = await corp.drain()
    # customers never seen: bench.callbacks' `--event deleted`
    await corp.deliver("deleted", range(first + FIRST_SEEN, first + FIRST_SEEN + events))
    figures["first-seen"] = await corp.drain()
    for guide, ext in pairs:
        body = {"userid": guide, "external_userid": ext, "welcome_code": True}
        await corp.control("contact/add", body)
    figures["add"] = await corp.drain()
    corp.clock.advance(60)
    for guide, ext in pairs:
        await corp.control("contact/delete_by_customer", {"userid": guide, "external_userid": ext})
    figures["delete"] = await corp.drain()
    answer = await (await corp.sim.get("/_sim/welcomes")).json()
    welcomed = {w["external_userid"] for w in answer["welcomes"]}
    if missing := [ext for _, ext in pairs if ext not in welcomed]:
        raise RuntimeError(f"{len(missing)} of {events} adds not welcomed")
    return figures


async def run(events: int, url: str) -> None:
    corp = await start(url)
    try:
        await measure(corp, min(events, 20), 0)  # warm-up: caches, compiled plans
        corp.clock.advance(3600)
        figures = await measure(corp, events, 100_000)
    finally:
        await corp.app.close()
        await corp.sim.close()
    print(f"{events} events of each kind, one process, {url.split(':', 1)[0]}")
    print(f"{'event':10s} {'CPU/event':>10s} {'statements':>11s} {'by SQLAlchemy':>14s}")
    for kind, (cpu, ran) in figures.items():
        total = sum(ran.values())
        print(
            f"{kind:10s} {cpu / events * 1e3:7.2f} ms {total / events:11.1f} "
            f"{ran['sqlalchemy'] / events:14.1f}"
        )
    add, floor = figures["add"][0], figures["unhandled"][0]
    print(f"ratio={add / floor:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300, help="events of each kind")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        upgrade_sync(url)  # Alembic runs its own event loop: before ours
        asyncio.run(run(args.events, url))


if __name__ == "__main__":
    main()
