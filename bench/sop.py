"""SOP engine throughput and memory: plan N enrollments, then claim and execute their tasks.

    python -m bench.sop [--quick]

For each N (10,000 and 1,000,000; --quick: 2,000 and 20,000) a fresh process plans N
enrollments of a one-step guide_task playbook with the real planner (100 customers per guide),
then runs scheduler ticks until every due task is executed against the simulated WeCom, which
runs as its own process (seeded with the same guides, customers and relations) so that its
memory is not counted. Each line gives enrollments/s, tasks/s and the engine process's peak
RSS, which should stay flat as N grows (work is claimed and held in fixed-size batches). The
last line is `ratio=`: tasks/s at the large N over tasks/s at the small N, in the same run.
Database: SQLite (WAL, synchronous=FULL) in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import time as dtime
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

PER_GUIDE = 100
IDENTITY = {
    "corp_id": "wwbenchcorp0001",
    "agent_id": 1000002,
    "secret": "bench-secret",
    "token": "benchtoken",
    "aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
}


def pairs(start: int, stop: int) -> list[tuple[str, str]]:
    """(guide, customer) for enrollments start..stop-1, made on demand (never all at once)."""
    return [(f"g{i // PER_GUIDE:05d}", f"wmbench{i:07d}") for i in range(start, stop)]


# ---- the simulated WeCom, seeded in its own process ------------------------------------------


def run_simulator(port: int, n: int) -> None:
    from aiohttp import web

    from guidebot.config import WeComIdentity
    from guidebot.wecom.simulator import SIMULATOR_STATE, SimulatorConfig, create_simulator_app
    from guidebot.wecom.simulator.records import Customer, Member, Relation

    config = SimulatorConfig(
        identity=WeComIdentity(**IDENTITY),
        api_limit_per_minute=1_000_000,
        api_limit_per_hour=60_000_000,
        member_messages_per_minute=1_000_000,
        member_messages_per_hour=60_000_000,
        call_log_limit=1_000,
    )
    app = create_simulator_app(config)
    state = app[SIMULATOR_STATE]
    state.upsert_department(11, "张江店", 1)
    now = int(time.time())
    for guide, ext in pairs(0, n):
        if guide not in state.members:
            state.members[guide] = Member(guide, guide, [11])
        state.customers[ext] = Customer(ext, ext)
        state.relations[(guide, ext)] = Relation(guide, ext, now)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ---- the engine, measured --------------------------------------------------------------------


async def run_engine(n: int, api_base: str, tmp: Path) -> dict:
    import aiohttp
    from sqlalchemy import insert

    from guidebot.clock import SystemClock
    from guidebot.config import Settings
    from guidebot.contacts.models import Customer, Department, Guide, Relation
    from guidebot.db.credentials import DatabaseCredentialStore
    from guidebot.db.engine import create_engine, create_session_factory
    from guidebot.db.migrate import upgrade
    from guidebot.sop.audience import Subject
    from guidebot.sop.context import SopRuntime
    from guidebot.sop.enrollment import enroll
    from guidebot.sop.playbook import (
        Audience,
        EnrollRule,
        Playbook,
        SendWindow,
        Step,
        Trigger,
    )
    from guidebot.sop.tick import tick
    from guidebot.wecom.client import WeComClient

    url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    await upgrade(url)
    templates = tmp / "templates" / "messages"
    templates.mkdir(parents=True)
    (templates / "bench.j2").write_text("{{ guide.name }}：本周新品到店，欢迎来试穿。")
    settings = Settings(
        **IDENTITY,
        admin_token="bench-admin-token-0001",
        secret_key="b" * 40,
        database_url=url,
        wecom_api_base=api_base,
        sop_dir=str(tmp / "sop"),
    )
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    clock = SystemClock()
    now = clock.now()

    async with sessions() as session, session.begin():
        await session.execute(
            insert(Department).values(
                id=11, name="张江店", code="SH011", is_store=True, sort_order=0, updated_at=now
            )
        )
        guides = [f"g{i:05d}" for i in range((n + PER_GUIDE - 1) // PER_GUIDE)]
        await session.execute(
            insert(Guide),
            [{"userid": g, "name": g, "status": "active", "updated_at": now} for g in guides],
        )
    for start in range(0, n, 5_000):
        chunk = pairs(start, min(n, start + 5_000))
        async with sessions() as session, session.begin():
            await session.execute(
                insert(Customer),
                [
                    {"external_userid": e, "name": e, "created_at": now, "updated_at": now}
                    for _, e in chunk
                ],
            )
            await session.execute(
                insert(Relation),
                [
                    {
                        "guide_userid": g,
                        "external_userid": e,
                        "status": "active",
                        "store_id": 11,
                        "tags": [],
                        "remark_mobiles": [],
                        "last_event_at": now,
                        "updated_at": now,
                    }
                    for g, e in chunk
                ],
            )

    playbook = Playbook(
        id="bench",
        version=1,
        name="bench",
        source="bench",
        trigger=Trigger("customer.added"),
        audience=Audience(),
        enroll=EnrollRule(once_per_customer=False),
        timezone="Asia/Shanghai",
        send_window=SendWindow(dtime(0, 0), dtime(23, 59, 59), frozenset(range(7))),
        stop_when=frozenset({"contact.lost"}),
        goal=None,
        steps=(Step("nudge", "enroll", timedelta(0), "guide_task", "bench.j2", timedelta(days=7)),),
        max_messages_per_day=5,
    )

    # Plan: every enrollment with its task row, 1,000 per transaction.
    enrolled_at = now - timedelta(minutes=5)
    started = time.perf_counter()
    for start in range(0, n, 1_000):
        async with sessions() as session, session.begin():
            for guide, ext in pairs(start, min(n, start + 1_000)):
                subject = Subject(guide, ext, "active", 11, "SH011", None, None, None, frozenset())
                await enroll(
                    session,
                    playbook,
                    subject,
                    at=enrolled_at,
                    now=now,
                    default_timezone="Asia/Shanghai",
                )
    plan_seconds = time.perf_counter() - started

    async with aiohttp.ClientSession() as http:
        wecom = WeComClient(
            http,
            corp_id=IDENTITY["corp_id"],
            secret=IDENTITY["secret"],
            agent_id=IDENTITY["agent_id"],
            api_base=api_base,
            credentials=DatabaseCredentialStore(sessions),
            calls_per_minute=1_000_000,
        )
        runtime = SopRuntime(
            sessions,
            wecom,
            clock,
            settings,
            registry=SimpleNamespace(templates_dir=templates),
            batch_size=500,
            max_batches=1_000_000,
        )
        started = time.perf_counter()
        report = await tick(runtime)
        run_seconds = time.perf_counter() - started
    await engine.dispose()
    if report.sent != n:
        raise SystemExit(f"expected {n} tasks sent, got {report.as_dict()}")
    return {
        "n": n,
        "plan_per_s": n / plan_seconds,
        "tasks_per_s": n / run_seconds,
        "wecom_calls": report.wecom_calls,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(n: int) -> dict:
    """One N in a fresh process pair (engine here, the simulator beside it)."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    simulator = subprocess.Popen(
        [sys.executable, "-m", "bench.sop", "--simulator", str(port), "--n", str(n)],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if simulator.poll() is not None:
                raise SystemExit("the simulator exited")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/config", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the simulator did not start") from None
                time.sleep(0.2)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.sop",
                "--engine",
                f"http://127.0.0.1:{port}",
                "--n",
                str(n),
            ],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        simulator.terminate()
        try:
            simulator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            simulator.kill()
            simulator.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 enrollments")
    parser.add_argument("--simulator", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulator:
        run_simulator(args.simulator, args.n)
        return
    if args.engine:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(asyncio.run(run_engine(args.n, args.engine, Path(tmp)))))
        return

    small, large = (2_000, 20_000) if args.quick else (10_000, 1_000_000)
    print(f"one guide_task step per enrollment, {PER_GUIDE} customers per guide, SQLite")
    results = []
    for n in (small, large):
        result = measure(n)
        results.append(result)
        print(
            f"N={n:>7,}: planned {result['plan_per_s']:>8,.0f} enrollments/s, "
            f"executed {result['tasks_per_s']:>8,.0f} tasks/s "
            f"({result['wecom_calls']:,} mass-send tasks), peak RSS {result['peak_rss_mb']:.0f} MB"
        )
    memory = results[1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
    print(f"peak memory at N={large:,} over N={small:,}: {memory:.2f}")
    print(f"ratio={results[1]['tasks_per_s'] / results[0]['tasks_per_s']:.3f}")


if __name__ == "__main__":
    main()
