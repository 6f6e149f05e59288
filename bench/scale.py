"""A brand's logs at scale: HQ read latencies, database size and the retention job's rate.

    python -m bench.scale [--quick] [--database-url URL] [--guides N] [--days N]

Loads DAYS days (default 430: a year kept, and the month past the 400-day periods that the
first retention run after an upgrade finds) of a brand of N guides (default 10,000, the
issue's brand; `--guides` is the scale factor: every log grows with it) into a fresh database
(SQLite by default; an empty PostgreSQL database with --database-url), generated inside the
database (bench/scale_data.py), builds the rollups with the job's own code, and then in the
same run:

* the main HQ reads over HTTP (the whole app, create_app): the dashboard, KPIs, the
  leaderboard, the customer list, customer search (and of one and two characters, matching
  few customers or many), a guide's customers, the guide list, cohorts, a customer's page
  and API, a guide's tasks, a customer's enrollments, the content list and the audit trail,
  each SAMPLES times with p50 and p95;
* the database's size;
* the retention job (guidebot.privacy.retention.prune with the default periods) run until it
  finds nothing, rows per second;
* the same reads and size again, then the rollups rebuilt from what is left, and the KPIs for
  the whole span checked equal to those before pruning.

The last line is `ratio=` the prune job's rate over the load's (rows per second, both in this
run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert, text

from bench import scale_data
from bench.corp import corp_rows
from bench.databases import fresh_postgres, is_postgres
from bench.metrics import settings_for
from guidebot.app import create_app
from guidebot.clock import FakeClock
from guidebot.contacts import counts, word_index
from guidebot.content.models import ContentItem
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.db.migrate import upgrade
from guidebot.metrics.rollup import backfill, recompute_all
from guidebot.privacy.retention import RULES, prune

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)  # noon in Shanghai
ADMIN = "bench-admin-token-0001"
# Tables whose triggers mark rollup work, count each guide's customers or index customer search
# (SQLite): the loaded history predates them; the rollups, the counts and the search index are
# built once from it afterwards (as `backfill` and migration 0028 do on an existing database).
TRIGGERED = ("relation_events", "relations", "sop_tasks", "content_forwards",
             "content_open_visitors", "customers")  # fmt: skip
# Each retention rule's table (guidebot.privacy.retention.RULES).
PRUNED_TABLES = {rule.name: rule.model.__tablename__ for rule in RULES}
SEQUENCED = ("relations", "inbox_events", "sop_enrollments", "sop_tasks")


@dataclass
class Report:
    engine: str
    guides: int
    days: int
    rows: dict[str, int] = field(default_factory=dict)
    load_seconds: float = 0.0
    rollup_seconds: float = 0.0
    size_before: int = 0
    size_after: int = 0
    reusable_after: int = 0
    latencies_before: dict[str, tuple[float, float]] = field(default_factory=dict)
    latencies_after: dict[str, tuple[float, float]] = field(default_factory=dict)
    pruned: dict[str, int] = field(default_factory=dict)
    prune_seconds: float = 0.0
    rebuild_seconds: float = 0.0
    kpis_before: dict[str, Any] = field(default_factory=dict)
    kpis_after: dict[str, Any] = field(default_factory=dict)

    @property
    def load_rate(self) -> float:
        return sum(self.rows.values()) / max(self.load_seconds, 1e-9)

    @property
    def prune_rate(self) -> float:
        return sum(self.pruned.values()) / max(self.prune_seconds, 1e-9)


def say(line: str) -> None:
    print(line, flush=True)


# ---- loading ----------------------------------------------------------------------------------


async def _corp(sessions, guides: int) -> None:
    now = NOW - timedelta(days=800)
    items = [
        dict(key=f"item{i}", kind="link", title=f"内容{i}", url=f"https://brand.example/{i}",
             created_at=now, updated_at=now)
        for i in range(1, scale_data.ITEMS + 1)
    ]  # fmt: skip
    async with sessions() as session, session.begin():
        for model, rows in [*corp_rows(guides, now), (ContentItem, items)]:
            await session.execute(insert(model), rows)


async def _triggers(engine, postgres: bool, on: bool, saved: list[str]) -> None:
    async with engine.begin() as conn:
        if postgres:
            verb = "ENABLE" if on else "DISABLE"
            for table in TRIGGERED:
                await conn.exec_driver_sql(f"ALTER TABLE {table} {verb} TRIGGER USER")
        elif on:
            for sql in saved:
                await conn.exec_driver_sql(sql)
        else:
            found = await conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
                f"({', '.join(repr(t) for t in TRIGGERED)})"
            )
            for name, sql in found.all():
                saved.append(sql)
                await conn.exec_driver_sql(f'DROP TRIGGER "{name}"')


async def load(engine, sessions, plan: scale_data.Plan, postgres: bool) -> dict[str, int]:
    await _corp(sessions, plan.guides)
    saved: list[str] = []
    await _triggers(engine, postgres, False, saved)
    dialect = scale_data.Dialect(postgres, NOW)
    await scale_data.load(engine, dialect, plan, say)
    await _triggers(engine, postgres, True, saved)
    started = time.perf_counter()
    async with sessions() as session, session.begin():
        await counts.recount(session)
        await word_index.rebuild(session)
    took = time.perf_counter() - started
    say(f"counted each guide's customers and indexed customer search in {took:.1f} s")
    async with engine.begin() as conn:
        if postgres:  # ids were given: the sequences follow
            for table in SEQUENCED:
                await conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', "
                    f"'{'id'}'), (SELECT max(id) FROM {table}))"
                )
    await analyze(engine, postgres)
    return await count(engine, scale_data.table_names(dialect, plan))


async def analyze(engine, postgres: bool) -> None:
    if postgres:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")


async def size(engine, postgres: bool, path: Path | None) -> tuple[int, int]:
    """(bytes on disk, bytes free inside for reuse)."""
    if postgres:
        async with engine.connect() as conn:
            total = await conn.scalar(text("SELECT pg_database_size(current_database())"))
        return int(total), 0
    assert path is not None
    return await asyncio.to_thread(_sqlite_size, path)


def _sqlite_size(path: Path) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    return path.stat().st_size, free * page


async def count(engine, tables: list[str]) -> dict[str, int]:
    async with engine.connect() as conn:
        return {t: int(await conn.scalar(text(f"SELECT count(*) FROM {t}"))) for t in tables}


# ---- the reads --------------------------------------------------------------------------------


def reads(plan: scale_data.Plan, rng: random.Random) -> dict[str, tuple[str, str | None]]:
    """One path for each HQ read, with a guide or customer drawn from `rng`, and a text its
    answer must hold (None: any)."""
    last = NOW.date()
    month = f"from={last - timedelta(days=29)}&to={last}"
    guide = f"g{rng.randrange(plan.guides):04d}"
    add = rng.randrange(plan.count("adds"))
    pages = max(1, min(200, plan.count("adds") // 50))
    # 客户{add} is also in longer numbers' names; of a big enough number, at most 11 are.
    found = f">wm{add}<" if add * 100 >= plan.count("adds") else None
    return {
        "dashboard /admin": ("/admin", None),
        "HQ KPIs /api/v1/metrics": (f"/api/v1/metrics?{month}", None),
        "leaderboard /api/v1/leaderboard": (f"/api/v1/leaderboard?{month}", None),
        "customer list /admin/customers": ("/admin/customers", None),
        "customer list, page 200 /admin/customers?page=": (f"/admin/customers?page={pages}", None),
        "customer search /admin/customers?q=": (f"/admin/customers?q=客户{add}", found),
        # One and two characters (no trigram in them): a surname few customers have (one in
        # a thousand), one a tenth have, and 客户, which every customer's name holds.
        "search, 1 character, few /admin/customers?q=张": ("/admin/customers?q=张", "张伟客户"),
        "search, 2 characters, few /admin/customers?q=张伟": (
            "/admin/customers?q=张伟",
            "张伟客户",
        ),
        "search, 1 character, many /admin/customers?q=陈": ("/admin/customers?q=陈", "陈客户"),
        "search, 2 characters, all /admin/customers?q=客户": ("/admin/customers?q=客户", None),
        "a guide's customers /api/v1/customers": (f"/api/v1/customers?guide={guide}", None),
        "guide list /api/v1/guides": ("/api/v1/guides", None),
        "guide list /admin/guides": ("/admin/guides", None),
        "store list /admin/stores": ("/admin/stores", None),
        "cohorts /api/v1/cohorts": ("/api/v1/cohorts", None),
        "customer page /admin/customers/{id}": (f"/admin/customers/wm{add}", None),
        "customer /api/v1/customers/{id}": (f"/api/v1/customers/wm{add}", None),
        "a guide's tasks /api/v1/tasks": (f"/api/v1/tasks?guide={guide}", None),
        "enrollments /api/v1/enrollments": (f"/api/v1/enrollments?customer=wm{add}", None),
        "content /api/v1/content": ("/api/v1/content", None),
        "audit /api/v1/audit": ("/api/v1/audit", None),
    }


def percentiles(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.95))]


async def measure(client: TestClient, plan, samples: int) -> dict[str, tuple[float, float]]:
    rng = random.Random(5)
    times: dict[str, list[float]] = {}
    headers = {"Authorization": f"Bearer {ADMIN}"}
    for _ in range(samples):
        for name, (path, holds) in reads(plan, rng).items():
            started = time.perf_counter()
            async with client.get(path, headers=headers, allow_redirects=False) as response:
                body = await response.read()
                assert response.status == 200, (path, response.status)
                assert holds is None or holds in body.decode(), (path, holds)
            times.setdefault(name, []).append(time.perf_counter() - started)
    return {name: percentiles(values) for name, values in times.items()}


async def kpis(client: TestClient, plan) -> dict[str, Any]:
    """HQ's KPIs per day over the whole span, and its leaderboard (what pruning must not
    move), in periods the API allows (at most 366 days)."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    figures = {}
    last = NOW.date()
    while last > NOW.date() - timedelta(days=plan.days):
        first = last - timedelta(days=299)
        for path in (
            f"/api/v1/metrics?from={first}&to={last}&by=day",
            f"/api/v1/leaderboard?from={first}&to={last}",
        ):
            async with client.get(path, headers=headers) as response:
                assert response.status == 200, path
                figures[path] = await response.json()
        last = first - timedelta(days=1)
    return figures


# ---- the run ----------------------------------------------------------------------------------


async def run(
    guides: int, days: int, database_url: str | None, samples: int, workdir: Path
) -> Report:
    url = database_url or f"sqlite+aiosqlite:///{workdir / 'scale.db'}"
    postgres = is_postgres(url)
    path = None if postgres else workdir / "scale.db"
    if postgres:
        await fresh_postgres(url)
    await upgrade(url)
    plan = scale_data.Plan(guides, days)
    report = Report(url.split(":")[0], guides, days)
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    settings = replace(
        settings_for(url), admin_token=ADMIN, wecom_api_base="http://127.0.0.1:9"
    )  # no WeCom: the start-up sync fails quietly and changes nothing
    try:
        started = time.perf_counter()
        report.rows = await load(engine, sessions, plan, postgres)
        report.load_seconds = time.perf_counter() - started
        say(f"loaded {sum(report.rows.values()):,} rows in {report.load_seconds:.1f} s")
        started = time.perf_counter()
        await backfill(sessions, settings.timezone, NOW)
        report.rollup_seconds = time.perf_counter() - started
        say(f"built the rollups from the logs in {report.rollup_seconds:.1f} s")
        report.size_before = (await size(engine, postgres, path))[0]
        app = create_app(settings, clock=FakeClock(NOW), run_workers=False)
        async with TestClient(TestServer(app)) as client:
            report.kpis_before = await kpis(client, plan)
            report.latencies_before = await measure(client, plan, samples)
            started = time.perf_counter()
            while (done := await prune(sessions, settings.retention, NOW)).total:
                for table, count in done.rows.items():
                    report.pruned[table] = report.pruned.get(table, 0) + count
            report.prune_seconds = time.perf_counter() - started
            say(f"pruned {sum(report.pruned.values()):,} rows in {report.prune_seconds:.1f} s")
            await analyze(engine, postgres)
            report.size_after, report.reusable_after = await size(engine, postgres, path)
            report.latencies_after = await measure(client, plan, samples)
            started = time.perf_counter()
            await recompute_all(sessions, settings.timezone, NOW)
            report.rebuild_seconds = time.perf_counter() - started
            report.kpis_after = await kpis(client, plan)
    finally:
        await engine.dispose()
    return report


def show(report: Report) -> None:
    mb = 1024 * 1024
    say(
        f"{report.engine}: {report.guides:,} guides, {report.days} days, "
        f"{sum(report.rows.values()):,} rows loaded in {report.load_seconds:.1f} s "
        f"({report.load_rate:,.0f} rows/s; rollups built in {report.rollup_seconds:.1f} s)"
    )
    say("  " + ", ".join(f"{t} {n:,}" for t, n in sorted(report.rows.items())))
    say(f"{'read':<48} {'before p50':>11} {'p95':>9} {'after p50':>10} {'p95':>9}")
    for name, (p50, p95) in report.latencies_before.items():
        a50, a95 = report.latencies_after[name]
        figures = f"{p50 * 1e3:9.1f}ms {p95 * 1e3:7.1f}ms {a50 * 1e3:8.1f}ms {a95 * 1e3:7.1f}ms"
        say(f"{name:<48} {figures}")
    say(
        f"size: {report.size_before / mb:,.0f} MB before, {report.size_after / mb:,.0f} MB after"
        + (
            f" ({report.reusable_after / mb:,.0f} MB of it free for reuse)"
            if report.reusable_after
            else ""
        )
    )
    say(
        f"retention: {sum(report.pruned.values()):,} rows pruned in {report.prune_seconds:.1f} s "
        f"({report.prune_rate:,.0f} rows/s: "
        + ", ".join(f"{t} {n:,}" for t, n in report.pruned.items() if n)
        + ")"
    )
    same = report.kpis_before == report.kpis_after
    say(
        f"KPIs over the {report.days} days before pruning and after it (rollups rebuilt from the "
        f"logs in {report.rebuild_seconds:.1f} s): {'equal' if same else 'DIFFERENT'}"
    )
    say(f"ratio={report.prune_rate / report.load_rate:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 guides (a test's size)")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite)")
    parser.add_argument("--guides", type=int, help="the scale factor (default 10,000)")
    parser.add_argument("--days", type=int, default=430)
    parser.add_argument("--samples", type=int, help="each read's repetitions (default 20)")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    logging.getLogger("guidebot").setLevel(logging.ERROR)  # the start-up sync's WeCom retries
    guides = args.guides or (10 if args.quick else 10_000)
    samples = args.samples or (3 if args.quick else 20)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        report = asyncio.run(run(guides, args.days, args.database_url, samples, Path(tmp)))
    show(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report.__dict__, default=str, indent=1))
    if report.kpis_before != report.kpis_after:
        sys.exit("KPIs moved with pruning")


if __name__ == "__main__":
    main()
