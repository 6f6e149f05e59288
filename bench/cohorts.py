"""Cohort and lift figures from the rollups, beside the same figures from the raw logs.

    python -m bench.cohorts [--quick] [--customers N] [--database-url URL]

Loads N customers (default 1,000,000; --quick 50,000) over 100 stores and 1,000 guides (quick:
10 and 100) into a fresh database (SQLite by default; an empty PostgreSQL with --database-url):
each customer's add over the last 365 days, some lost, some transferred, some buying (some
orders refunded), half of them enrolled in a playbook with a 10% holdout. It builds the cohort
rollup with the job's own code (guidebot.metrics.cohorts.refresh_cohorts), then in one run:

* the weekly retention table by store and the monthly repurchase table of everyone, read from
  the rollup (cohort_periods), as the API reads them;
* the same tables computed from the raw logs (relation_events, orders) with the same
  definitions, checked equal to the rollup's;
* the holdout lift of the playbook from its rollup (guidebot.sop.holdout.lift_by_playbook over
  sop_goal_counts, rebuilt from the loaded enrollments), and the same from the raw enrollment
  rows.

It prints each timing and, last, `ratio=` the raw-log time over the rollup time for the cohort
tables.
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

from sqlalchemy import insert, select

from bench.corp import corp_rows, guide_ids
from bench.databases import fresh_postgres, is_postgres
from guidebot.contacts.models import RelationEvent
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.db.migrate import upgrade
from guidebot.metrics.cohort_report import cohort_rows
from guidebot.metrics.cohorts import Event, first_add, member_figures, period_start, refresh_cohorts
from guidebot.metrics.models import Order
from guidebot.metrics.placer import Placer
from guidebot.sop.holdout import (
    HOLDOUT,
    Arm,
    assign,
    lift,
    lift_by_playbook,
    rebuild_goal_counts,
)
from guidebot.sop.models import SopEnrollment

TZ = "Asia/Shanghai"
NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
DAYS = 365
CHUNK = 20_000
PLAYBOOK = "bench_holdout"
RETENTION = ("d1", "d7", "d30", "d90")


async def put(sessions, model, rows: list[dict]) -> None:
    async with sessions() as session, session.begin():
        for i in range(0, len(rows), CHUNK):
            await session.execute(insert(model), rows[i : i + CHUNK])


async def load_corp(sessions, guides: int) -> list[str]:
    for model, rows in corp_rows(guides, NOW):
        await put(sessions, model, rows)
    return guide_ids(guides)


def customer_rows(n: int, userids: list[str], seed: int = 11):
    """The logs of n customers: relation events, orders, enrollments."""
    rng = random.Random(seed)
    events, orders, enrollments = [], [], []
    for c in range(n):
        ext, guide = f"wm{c:07d}", rng.choice(userids)
        added = NOW - timedelta(seconds=rng.randrange(DAYS * 86_400))
        event = dict(
            recorded_at=added,
            guide_userid=guide,
            store_id=None,
            external_userid=ext,
            source="callback",
            channel=rng.choice(("store_qr", "poster", None)),
        )
        events.append(dict(event, occurred_at=added, kind="added"))
        roll = rng.random()
        if roll < 0.2:
            end = added + timedelta(hours=rng.randrange(1, 24 * 120))
            events.append(dict(event, occurred_at=end, recorded_at=end, kind="lost"))
        elif roll < 0.23:
            moved, other = added + timedelta(days=rng.randrange(1, 60)), rng.choice(userids)
            events.append(dict(event, occurred_at=moved, recorded_at=moved, kind="transferred_out"))
            events.append(
                dict(
                    event,
                    guide_userid=other,
                    occurred_at=moved,
                    recorded_at=moved,
                    kind="transferred_in",
                )
            )
        if rng.random() < 0.35:
            for k in range(rng.choice((1, 1, 2, 3, 4))):
                paid = added + timedelta(hours=rng.randrange(1, 24 * 200))
                refunded = rng.random() < 0.1
                orders.append(
                    dict(
                        order_id=f"o{c}-{k}",
                        external_userid=ext,
                        amount_fen=rng.randrange(1, 99_999),
                        paid_at=paid,
                        status="refunded" if refunded else "paid",
                        refunded_at=paid + timedelta(days=1) if refunded else None,
                        guide_userid=guide,
                        attribution="recent_guide",
                        created_at=paid,
                        updated_at=paid,
                    )
                )
        if c % 2 == 0:
            group = assign(PLAYBOOK, ext, 0.1)
            met = rng.random() < (0.09 if group == HOLDOUT else 0.12)
            enrollments.append(
                dict(
                    playbook_id=PLAYBOOK,
                    playbook_version=1,
                    scope="*",
                    guide_userid=guide,
                    external_userid=ext,
                    store_id=None,
                    timezone=TZ,
                    trigger="customer.added",
                    cycle="0",
                    status="completed",
                    enrolled_at=added,
                    goal_event="order.paid",
                    goal_deadline=added + timedelta(days=14),
                    goal_met_at=added + timedelta(days=3) if met else None,
                    treatment_group=group,
                    settings={},
                    created_at=added,
                    updated_at=added,
                )
            )
    return events, orders, enrollments


async def from_raw_logs(sessions, start: date, end: date):
    """The weekly retention table by store and the monthly repurchase of everyone, from the
    raw logs with the same definitions (what the rollup spares each request)."""
    async with sessions() as session:
        placer = await Placer.load(session, None, TZ)
        events: dict[str, list[Event]] = defaultdict(list)
        rows = await session.execute(
            select(
                RelationEvent.external_userid,
                RelationEvent.occurred_at,
                RelationEvent.kind,
                RelationEvent.guide_userid,
                RelationEvent.channel,
                RelationEvent.campaign,
            ).order_by(RelationEvent.occurred_at, RelationEvent.id)
        )
        for ext, at, kind, guide, channel, campaign in rows:
            events[ext].append(Event(at, kind, guide, channel, campaign))
        paid: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
        for ext, at, amount in await session.execute(
            select(Order.external_userid, Order.paid_at, Order.amount_fen).where(
                Order.status == "paid"
            )
        ):
            paid[ext].append((at, amount))
    weekly: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0] * 5)
    monthly: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for ext, logged in events.items():
        add = first_add(logged)
        store, day = placer.place(add.guide, add.at)
        if not start <= day <= end:
            continue
        figures = member_figures(logged, paid.get(ext, ()), add.at, NOW)
        cell = weekly[(period_start(day, "week"), str(store))]
        cell[0] += 1
        for i, name in enumerate(RETENTION, start=1):
            cell[i] += bool(figures[name])
        month = monthly[period_start(day, "month")]
        month[0] += figures["r90"] is not None
        month[1] += bool(figures["r90"])
    return dict(weekly), dict(monthly)


async def from_rollup(sessions, start: date, end: date):
    async with sessions() as session:
        by_store = await cohort_rows(session, "week", "store", start, end)
        everyone = await cohort_rows(session, "month", "all", start, end)
    weekly = {
        (row.start, row.key): [row.sums["members"]] + [row.sums[f"{r}_kept"] for r in RETENTION]
        for row in by_store
    }
    monthly = {row.start: [row.sums["r90_due"], row.sums["r90_yes"]] for row in everyone}
    return weekly, monthly


async def raw_lift(sessions):
    async with sessions() as session:
        rows = await session.execute(
            select(
                SopEnrollment.treatment_group,
                SopEnrollment.goal_met_at,
                SopEnrollment.goal_deadline,
            ).where(SopEnrollment.playbook_id == PLAYBOOK)
        )
        counts = {"treated": [0, 0], "holdout": [0, 0]}
        for group, met, deadline in rows:
            if group is None or (met is None and deadline.astimezone(UTC).date() >= NOW.date()):
                continue
            counts[group][0] += 1
            counts[group][1] += met is not None
    return lift(Arm(*counts["treated"]), Arm(*counts["holdout"]))


async def timed(work, times: int):
    spent, result = [], None
    for _ in range(times):
        began = time.perf_counter()
        result = await work()
        spent.append(time.perf_counter() - began)
    return statistics.median(spent), result


async def run(url: str, customers: int, guides: int) -> None:
    if is_postgres(url):
        await fresh_postgres(url)
    await upgrade(url)
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    try:
        began = time.perf_counter()
        userids = await load_corp(sessions, guides)
        events, orders, enrollments = customer_rows(customers, userids)
        await put(sessions, RelationEvent, events)
        await put(sessions, Order, orders)
        await put(sessions, SopEnrollment, enrollments)
        async with sessions() as session, session.begin():
            await rebuild_goal_counts(session)  # what enrolling and crediting goals write
        print(
            f"loaded {customers:,} customers ({len(events):,} relation events, "
            f"{len(orders):,} orders, {len(enrollments):,} enrollments) in "
            f"{time.perf_counter() - began:.1f} s",
            flush=True,  # a full run takes long: each stage as it ends
        )
        began = time.perf_counter()
        await refresh_cohorts(sessions, TZ, NOW)
        print(f"built the cohort rollup in {time.perf_counter() - began:.1f} s", flush=True)

        start, end = (NOW - timedelta(days=DAYS + 1)).date(), NOW.date()
        rollup_s, rolled = await timed(lambda: from_rollup(sessions, start, end), 5)
        raw_s, raw = await timed(lambda: from_raw_logs(sessions, start, end), 1)
        assert rolled == raw, "the rollup and the raw logs disagree"
        print(
            f"cohort tables (weekly retention by store, {len(rolled[0])} cells; monthly "
            f"repurchase): rollup {rollup_s * 1000:.1f} ms, raw logs {raw_s * 1000:.1f} ms "
            "(equal)"
        )
        lift_s, lifted = await timed(
            lambda: _in_session(sessions, lambda s: lift_by_playbook(s, NOW)), 5
        )
        raw_lift_s, from_raw = await timed(lambda: raw_lift(sessions), 1)
        assert lifted[PLAYBOOK] == from_raw
        print(
            f"holdout lift ({from_raw.treated.customers + from_raw.held_out.customers:,} "
            f"settled enrollments): rollup {lift_s * 1000:.1f} ms, raw rows "
            f"{raw_lift_s * 1000:.1f} ms; lift {from_raw.difference:+.4f} "
            f"[{from_raw.low:+.4f}, {from_raw.high:+.4f}]"
        )
        print(f"ratio={raw_s / rollup_s:.1f}", flush=True)
    finally:
        await engine.dispose()


async def _in_session(sessions, work):
    async with sessions() as session:
        return await work(session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50,000 customers over 100 guides")
    parser.add_argument("--customers", type=int, help="how many customers (default 1,000,000)")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite)")
    args = parser.parse_args()
    customers = args.customers or (50_000 if args.quick else 1_000_000)
    guides = 100 if args.quick else 1_000
    if args.database_url:
        asyncio.run(run(args.database_url, customers, guides))
        return
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
        asyncio.run(run(url, customers, guides))


if __name__ == "__main__":
    main()
