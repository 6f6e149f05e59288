"""Metrics API and dashboard latency on the rollups, beside the same figures from the raw log.

    python -m bench.metrics [--quick] [--database-url URL]

Loads 1,000,000 logged events (relation changes, forwards, first opens, SOP tasks, orders) over
1,000 guides in 100 stores and 180 days (--quick: 100,000 over 100 guides) into a fresh
database (SQLite by default; an empty PostgreSQL database with --database-url), builds the
rollups, then in the same run:

* the metrics API (`GET /api/v1/guides/{userid}/metrics`, 30 days, over HTTP on loopback) for
  a sample of guides, and the same figures computed from the raw log for the same guides;
* a dashboard query (HQ totals per day for 30 days, and the leaderboard of every guide), from
  the rollups and from the raw log.

It checks that both ways give the same figures, prints both timings, and as the last line
`ratio=` the raw-log time over the rollup time for the same work.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import case, delete, func, insert, select

from bench.corp import corp_rows, guide_ids
from bench.databases import fresh_postgres, is_postgres
from guidebot.clock import FakeClock
from guidebot.config import Settings
from guidebot.contacts.models import (
    Customer,
    Relation,
    RelationEvent,
)
from guidebot.content.models import ContentForward, ContentItem, ContentOpenVisitor
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.db.migrate import upgrade
from guidebot.metrics import kpis
from guidebot.metrics.daily_rows import compute
from guidebot.metrics.models import MetricsDirty, Order
from guidebot.metrics.placer import Placer
from guidebot.metrics.report import Period, Scope, counter_totals, leaderboard
from guidebot.metrics.rollup import backfill
from guidebot.sop.models import SopEnrollment, SopTask
from guidebot.web.api.common import setup_api
from guidebot.web.api.errors import api_errors
from guidebot.web.api.metrics import api as metrics_api
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS

TZ = "Asia/Shanghai"
DAYS = 180
NOW = datetime(2026, 6, 30, 4, 0, tzinfo=UTC)  # noon in Shanghai
ADMIN = "bench-admin-token-0001"
CHUNK = 20_000

# How the logged events split between the logs.
SHARES = {"relation": 0.5, "forward": 0.3, "open": 0.12, "task": 0.06, "order": 0.02}
KINDS = (
    ["added"] * 55
    + ["lost"] * 15
    + ["removed"] * 5
    + ["reactivated"] * 10
    + ["edited"] * 10
    + ["transferred_in"] * 3
    + ["transferred_out"] * 2
)
TASK_STATUS = ["sent"] * 3 + ["done"] * 5 + ["skipped"] + ["expired"]


def settings_for(url: str) -> Settings:
    return Settings(
        corp_id="wwbenchcorp0001",
        agent_id=1000002,
        secret="bench-secret",
        token="benchtoken",
        aes_key="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        admin_token=ADMIN,
        secret_key="b" * 40,
        database_url=url,
        timezone=TZ,
    )


def instant(rng: random.Random) -> datetime:
    return NOW - timedelta(seconds=rng.randrange(DAYS * 86_400))


async def load(sessions, events: int, guides: int, seed: int = 7) -> dict[str, int]:
    """Write the corp and `events` logged events; returns how many of each."""
    rng = random.Random(seed)
    userids = guide_ids(guides)
    counts: dict[str, int] = defaultdict(int)

    async def put(model, rows: list[dict]) -> None:
        async with sessions() as session, session.begin():
            for i in range(0, len(rows), CHUNK):
                await session.execute(insert(model), rows[i : i + CHUNK])

    now = NOW
    for model, rows in corp_rows(guides, now):
        await put(model, rows)
    await put(
        ContentItem,
        [
            dict(
                key=f"item{i}",
                kind="link",
                title=f"内容{i}",
                url=f"https://brand.example/{i}",
                created_at=now,
                updated_at=now,
            )
            for i in range(1, 51)
        ],
    )

    per_guide = 100  # customers per guide in `relations` (the 留资率 snapshot)
    customers = [f"wm{u}c{c:03d}" for u in userids for c in range(per_guide)]
    await put(
        Customer, [dict(external_userid=c, created_at=now, updated_at=now) for c in customers]
    )
    await put(
        Relation,
        [
            dict(
                guide_userid=c[2:7],
                external_userid=c,
                status="active" if rng.random() < 0.8 else "lost",
                created_at=now,
                last_event_at=now,
                updated_at=now,
                tags=[],
                remark_mobiles=["13800000000"] if rng.random() < 0.3 else [],
            )
            for c in customers
        ],
    )

    def customer(user: str) -> str:
        return f"wm{user}c{rng.randrange(per_guide):03d}"

    share = {k: int(events * v) for k, v in SHARES.items()}
    share["relation"] += events - sum(share.values())
    batch: list[dict] = []
    for _ in range(share["relation"]):
        user = rng.choice(userids)
        batch.append(
            dict(
                occurred_at=instant(rng),
                recorded_at=now,
                kind=rng.choice(KINDS),
                guide_userid=user,
                store_id=None,
                external_userid=customer(user),
                source="callback",
            )
        )
    await put(RelationEvent, batch)
    counts["relation_events"] = len(batch)

    batch = []
    for n in range(share["forward"]):
        user = rng.choice(userids)
        at = instant(rng)
        batch.append(
            dict(
                ref=f"b:{n}",
                item_id=rng.randrange(1, 51),
                guide_userid=user,
                external_userid=customer(user),
                via="sidebar",
                sent_at=at,
                recorded_at=at,
            )
        )
    await put(ContentForward, batch)
    counts["content_forwards"] = len(batch)

    batch = []
    for n in range(share["open"]):
        user = rng.choice(userids)
        batch.append(
            dict(
                item_id=n % 50 + 1,
                visitor_key=f"v:{n}",
                guide_userid=user,
                external_userid=customer(user),
                first_opened_at=instant(rng),
            )
        )
    await put(ContentOpenVisitor, batch)
    counts["content_open_visitors"] = len(batch)

    enrollments, tasks = [], []
    for n in range(share["task"] // 2):
        user = rng.choice(userids)
        at = instant(rng)
        enrollments.append(
            dict(
                id=n + 1,
                playbook_id="bench",
                playbook_version=1,
                scope=user,
                guide_userid=user,
                external_userid=customer(user),
                timezone=TZ,
                trigger="customer.added",
                cycle=str(n),
                status="completed",
                enrolled_at=at,
                settings={},
                created_at=at,
                updated_at=at,
            )
        )
        for step, action, due in (
            ("welcome", "welcome", at),
            ("call", "remind", at + timedelta(1)),
        ):
            status = (
                rng.choice(TASK_STATUS)
                if action == "remind"
                else rng.choice(["sent", "sent", "failed"])
            )
            done = status in ("done", "skipped", "failed", "expired")
            tasks.append(
                dict(
                    enrollment_id=n + 1,
                    step_id=step,
                    playbook_id="bench",
                    playbook_version=1,
                    guide_userid=user,
                    external_userid=enrollments[-1]["external_userid"],
                    action=action,
                    due_at=due,
                    status=status,
                    attempts=1,
                    created_at=at,
                    updated_at=at,
                    completed_at=due + timedelta(hours=rng.randrange(48)) if done else None,
                    completed_by="guide" if done else None,
                )
            )
    await put(SopEnrollment, enrollments)
    await put(SopTask, tasks)
    counts["sop_tasks"] = len(tasks)

    batch = []
    for n in range(share["order"]):
        user = rng.choice(userids)
        at = instant(rng)
        refunded = rng.random() < 0.1
        batch.append(
            dict(
                order_id=f"B{n}",
                posted_external_userid=None,
                external_userid=customer(user),
                amount_fen=rng.randrange(1_000, 500_000),
                paid_at=at,
                status="refunded" if refunded else "paid",
                refunded_at=at + timedelta(days=2) if refunded else None,
                guide_userid=user,
                attribution="recent_guide",
                created_at=at,
                updated_at=at,
            )
        )
    await put(Order, batch)
    counts["orders"] = len(batch)
    # The history predates the rollups: drop the trail the triggers wrote while loading.
    async with sessions() as session, session.begin():
        await session.execute(delete(MetricsDirty))
    return counts


# ---- the same figures from the raw log --------------------------------------------------------


async def raw_guide(sessions, guide: str, period: Period) -> dict:
    """One guide's KPIs straight from the logs (what the API would cost without rollups)."""
    async with sessions() as session:
        placer = await Placer.load(session, [guide], TZ)
        buckets = await compute(session, placer, guide, period.first, period.last, NOW)
        totals = kpis.empty_totals()
        for counts in buckets.values():
            kpis.add_totals(totals, counts)
        active, filled = await raw_profile(session, [guide])
        totals["profile_active"], totals["profile_filled"] = active, filled
        return kpis.evaluate(totals)


async def raw_profile(session, guides: list[str]) -> tuple[int, int]:
    from guidebot.metrics.profiles import profile_filled

    active, filled = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(case((profile_filled(), 1), else_=0)), 0))
            .select_from(Relation)
            .where(Relation.guide_userid.in_(guides), Relation.status == "active")
        )
    ).one()
    return int(active), int(filled)


async def raw_dashboard(sessions, guides: list[str], period: Period) -> tuple[dict, list]:
    """HQ new customers per day and every guide ranked by new customers, from the logs."""
    per_day: dict[date, int] = defaultdict(int)
    ranking = []
    async with sessions() as session:
        placer = await Placer.load(session, guides, TZ)
        for guide in guides:
            buckets = await compute(session, placer, guide, period.first, period.last, NOW)
            total = 0
            for (_, day), counts in buckets.items():
                new = counts.get("added", 0) + counts.get("reactivated", 0)
                per_day[day] += new
                total += new
            ranking.append((guide, total))
    ranking.sort(key=lambda r: (-r[1], r[0]))
    return dict(per_day), ranking


async def rollup_dashboard(sessions, period: Period) -> tuple[dict, list]:
    async with sessions() as session:
        by_day = await counter_totals(session, Scope(), period, group="day")
        board = await leaderboard(session, period, "new_customers", limit=100_000)
    per_day = {day: c["added"] + c["reactivated"] for day, c in by_day.items()}
    return per_day, [(r["userid"], r["value"]) for r in board]


# ---- the run ----------------------------------------------------------------------------------


def api_app(settings: Settings, sessions) -> web.Application:
    app = web.Application(middlewares=[api_errors])
    app[SETTINGS] = settings
    app[SESSIONS] = sessions
    app[CLOCK] = FakeClock(NOW)
    setup_api(app, metrics_api)
    return app


async def run(events: int, guides: int, database_url: str | None, samples: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        if is_postgres(url):
            await fresh_postgres(url)
        await upgrade(url)
        engine = create_engine(url)
        sessions = create_session_factory(engine)
        try:
            started = time.perf_counter()
            counts = await load(sessions, events, guides)
            print(
                f"loaded {sum(counts.values()):,} events over {guides:,} guides, {DAYS} days "
                f"({', '.join(f'{k} {v:,}' for k, v in counts.items())}) "
                f"in {time.perf_counter() - started:.1f} s on {url.split(':')[0]}"
            )
            started = time.perf_counter()
            await backfill(sessions, TZ, NOW)
            print(
                f"built the rollups from the whole history in {time.perf_counter() - started:.1f} s"
            )
            await report(url, sessions, guides, samples)
        finally:
            await engine.dispose()


async def report(url: str, sessions, guides: int, samples: int) -> None:
    settings = settings_for(url)
    last = NOW.astimezone(settings.tz).date()
    period = Period(last - timedelta(days=29), last)
    rng = random.Random(11)
    userids = [f"g{n:04d}" for n in range(guides)]
    sample = [rng.choice(userids) for _ in range(samples)]
    query = {"from": period.first.isoformat(), "to": period.last.isoformat()}
    headers = {"Authorization": f"Bearer {ADMIN}"}

    async with TestClient(TestServer(api_app(settings, sessions))) as client:
        api_times, answers = [], {}
        for guide in sample:
            started = time.perf_counter()
            response = await client.get(
                f"/api/v1/guides/{guide}/metrics", params=query, headers=headers
            )
            body = await response.json()
            api_times.append(time.perf_counter() - started)
            assert response.status == 200, body
            answers[guide] = body["metrics"]
    raw_times = []
    for guide in sample:
        started = time.perf_counter()
        figures = await raw_guide(sessions, guide, period)
        raw_times.append(time.perf_counter() - started)
        assert figures == answers[guide], (guide, figures, answers[guide])

    started = time.perf_counter()
    rolled = await rollup_dashboard(sessions, period)
    rollup_dash = time.perf_counter() - started
    started = time.perf_counter()
    raw = await raw_dashboard(sessions, userids, period)
    raw_dash = time.perf_counter() - started
    nonzero = [{d: v for d, v in figures.items() if v} for figures in (rolled[0], raw[0])]
    assert nonzero[0] == nonzero[1], "dashboard per-day figures differ"
    assert rolled[1] == raw[1], "leaderboards differ"

    def ms(values: list[float]) -> str:
        values = sorted(values)
        p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
        return (
            f"mean {statistics.mean(values) * 1000:.2f} ms, p50 "
            f"{statistics.median(values) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms"
        )

    print(f"guide metrics, 30 days, {samples} guides (same figures both ways):")
    print(f"  rollups, GET /api/v1/guides/{{userid}}/metrics over HTTP: {ms(api_times)}")
    print(f"  raw log, the same figures computed from the logs:        {ms(raw_times)}")
    print(f"dashboard: HQ new customers per day for 30 days + leaderboard of all {guides} guides:")
    print(f"  rollups: {rollup_dash * 1000:.1f} ms")
    print(f"  raw log: {raw_dash * 1000:.1f} ms")
    rollup_total = sum(api_times) + rollup_dash
    raw_total = sum(raw_times) + raw_dash
    print(
        f"api ratio={statistics.mean(raw_times) / statistics.mean(api_times):.1f} "
        f"dashboard ratio={raw_dash / rollup_dash:.1f}"
    )
    print(f"ratio={raw_total / rollup_total:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events over 100 guides")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite)")
    args = parser.parse_args()
    events, guides = (100_000, 100) if args.quick else (1_000_000, 1_000)
    asyncio.run(run(events, guides, args.database_url, samples=50 if args.quick else 200))


if __name__ == "__main__":
    main()
