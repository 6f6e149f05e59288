"""Rollups: idempotent recomputation, the dirty-row trail, store time zones, concurrent jobs."""

from __future__ import annotations

import asyncio
from datetime import date, datetime

from sqlalchemy import event, func, insert, select

from guidebot.contacts.directory import update_store
from guidebot.metrics.daily_rows import compute, write
from guidebot.metrics.jobs import ROLLUP_EVERY_SECONDS
from guidebot.metrics.models import GuideDaily, MetricsDirty
from guidebot.metrics.placer import Placer
from guidebot.metrics.rollup import recompute_all, refresh
from tests.metrics.conftest import SHANGHAI, at


async def day_counts(h, guide: str) -> dict[tuple[date, int], tuple[int, int]]:
    async with h.sessions() as session:
        rows = await session.execute(
            select(GuideDaily.day, GuideDaily.store_id, GuideDaily.added, GuideDaily.lost).where(
                GuideDaily.guide_userid == guide
            )
        )
        return {(d, s): (a, lost) for d, s, a, lost in rows}


async def dirty_count(h) -> int:
    async with h.sessions() as session:
        return await session.scalar(select(func.count()).select_from(MetricsDirty))


async def test_recomputing_a_day_twice_gives_the_same_rows(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    h.set_time(at(9, 18))
    await h.lose("g1", "wmc02")
    assert await dirty_count(h) > 0  # the triggers wrote the trail in the changes' transactions
    await h.settle()
    assert await dirty_count(h) == 0  # one run applied and removed all of it
    first = await h.rows()
    assert await day_counts(h, "g1") == {(date(2026, 3, 9), 11): (2, 1)}

    for _ in range(2):
        async with h.sessions() as session, session.begin():
            placer = await Placer.load(session, ["g1"], h.settings.timezone)
            day = date(2026, 3, 9)
            buckets = await compute(session, placer, "g1", day, day, h.clock.now())
            await write(session, "g1", day, day, buckets, h.clock.now())
        assert await h.rows() == first

    # Stale or repeated trail rows (a replay, two triggers for one change) change nothing.
    async with h.sessions() as session, session.begin():
        for _ in range(3):
            await session.execute(
                insert(MetricsDirty).values(
                    source="relation", guide_userid="g1", at=at(9, 10), kind="added"
                )
            )
    await h.settle()
    assert await h.rows() == first
    assert ROLLUP_EVERY_SECONDS <= 5  # with the job's period, a change shows within 10 s


async def test_local_days_follow_the_stores_time_zone(h):
    # 00:30 in Shanghai is 16:30 UTC the day before: the add is Tuesday's, not Monday's.
    h.set_time(datetime(2026, 3, 10, 0, 30, tzinfo=SHANGHAI))
    await h.add("g1", "wmc01")
    # 23:30 on Monday in Los Angeles (PDT, UTC-7) is 06:30 UTC / 14:30 Shanghai on Tuesday.
    from zoneinfo import ZoneInfo

    la = ZoneInfo("America/Los_Angeles")
    h.set_time(datetime(2026, 3, 9, 23, 30, tzinfo=la))
    await h.add("g2", "wmc04")
    await h.settle()
    assert await day_counts(h, "g1") == {(date(2026, 3, 10), 11): (1, 0)}
    assert await day_counts(h, "g2") == {(date(2026, 3, 10), 12): (1, 0)}  # Shanghai's day

    # Store 12 runs on Los Angeles time from now on: its days move, history included.
    async with h.sessions() as session, session.begin():
        await update_store(session, "12", timezone="America/Los_Angeles", now=h.clock.now())
    await h.settle()
    assert await day_counts(h, "g2") == {(date(2026, 3, 9), 12): (1, 0)}
    h.set_time(datetime(2026, 3, 10, 23, 30, tzinfo=la))  # Wednesday 07:30 UTC
    await h.add("g2", "wmc06")
    await h.settle()
    assert await day_counts(h, "g2") == {
        (date(2026, 3, 9), 12): (1, 0),
        (date(2026, 3, 10), 12): (1, 0),
    }
    status, body = await h.api(
        "GET", "/stores/12/metrics", params={"from": "2026-03-10", "to": "2026-03-10"}
    )
    assert status == 200
    assert body["metrics"]["new_customers"] == 1


async def test_concurrent_jobs_agree(h):
    h.set_time(at(9, 10))
    for ext in ("wmc01", "wmc02", "wmc03"):
        await h.add("g1", ext)
    await h.add("g2", "wmc04")
    reports = await asyncio.gather(*(h.settle() for _ in range(4)))
    assert sum(r.dirty for r in reports) > 0
    await h.settle()
    assert await dirty_count(h) == 0
    assert await day_counts(h, "g1") == {(date(2026, 3, 9), 11): (3, 0)}
    assert await day_counts(h, "g2") == {(date(2026, 3, 9), 12): (1, 0)}


async def test_existing_history_is_built_on_the_first_run(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g2", "wmc04")
    # A database that had events before the metrics tables: no trail, no backfill mark.
    from sqlalchemy import delete

    from guidebot.metrics.models import GuideProfileDaily, MetricsState

    async with h.sessions() as session, session.begin():
        for table in (MetricsDirty, GuideDaily, GuideProfileDaily, MetricsState):
            await session.execute(delete(table))
    report = await h.settle()
    assert report.backfilled == 2  # g1 and g2: the guides with any history
    assert await day_counts(h, "g1") == {(date(2026, 3, 9), 11): (1, 0)}
    assert await day_counts(h, "g2") == {(date(2026, 3, 9), 12): (1, 0)}


async def test_a_refresh_runs_in_short_transactions_and_counts_as_one_would(h):
    """Each of a refresh's transactions recomputes a few guides (so a callback never waits
    behind all of them on SQLite's one writer); the figures are a full rebuild's."""
    h.set_time(at(9, 10))
    await h.settle()  # the first run's backfill, out of the way
    for n, guide in enumerate(("g1", "g2", "g3", "g1", "g2")):
        await h.add(guide, f"wmc{n + 1:02d}")
    h.set_time(at(9, 18))
    await h.lose("g2", "wmc02")
    assert await dirty_count(h) > 0

    begins: list[object] = []

    def on_begin(conn) -> None:
        begins.append(conn)

    engine = h.sessions.kw["bind"].sync_engine
    event.listen(engine, "begin", on_begin)
    try:
        report = await refresh(
            h.sessions, h.settings.timezone, h.clock.now(), guides_per_transaction=1
        )
    finally:
        event.remove(engine, "begin", on_begin)
    assert report.guides == 3 and await dirty_count(h) == 0
    # The state read, then a transaction per guide (all in one was two transactions in all).
    assert len(begins) >= 4, len(begins)
    short = await h.rows()
    await recompute_all(h.sessions, h.settings.timezone, h.clock.now())
    assert await h.rows() == short


async def test_run_as_a_job_that_gives_way_each_transaction_waits_for_the_add_in_hand(h):
    """On SQLite an add goes through several short transactions on the one connection, and
    each would queue behind one of the rollup's: at a steady 25 adds/s that made the welcome's
    p99 0.9 s. Run by the scheduler as a job that gives way, the rollup first lets the add in
    hand (and its welcome) finish before each of its transactions (guidebot.scheduler)."""
    from functools import partial

    from guidebot.periodic import TURN_PATIENCE, FixedJob
    from guidebot.scheduler import GiveWay, _logged

    h.set_time(at(9, 10))
    await h.settle()
    for n, guide in enumerate(("g1", "g2", "g3")):
        await h.add(guide, f"wmc{n + 1:02d}")
    begins: list[str] = []

    async def quiet(patience: float) -> None:
        assert patience == TURN_PATIENCE
        begins.append("turn")

    engine = h.sessions.kw["bind"].sync_engine
    listener = lambda conn: begins.append("begin")  # noqa: E731
    event.listen(engine, "begin", listener)
    run = partial(refresh, h.sessions, h.settings.timezone, h.clock.now(), guides_per_transaction=1)
    try:
        job = FixedJob("metrics-rollup", run, every_seconds=5, gives_way=True)
        await _logged(job, GiveWay(lambda: False, quiet=quiet))()
    finally:
        event.remove(engine, "begin", listener)
    assert await dirty_count(h) == 0
    writes = [i for i, what in enumerate(begins) if what == "begin"][1:]  # after the state read
    assert len(writes) >= 3, begins  # a transaction per guide
    assert all(begins[i - 1] == "turn" for i in writes), begins
    # Outside a job that gives way, nothing waits.
    begins.clear()
    await refresh(h.sessions, h.settings.timezone, h.clock.now())
    assert "turn" not in begins


async def test_every_bookkeeping_job_takes_its_turn_before_its_transactions(h):
    """The rollup, the cohorts and the pruning, run as the scheduler runs them, each wait for
    the add in hand before they take the connection (guidebot.periodic.take_turn)."""
    from guidebot.runtime import periodic_jobs
    from guidebot.scheduler import GiveWay, _logged
    from guidebot.web.keys import RUNTIME

    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    turns: list[float] = []

    async def quiet(patience: float) -> None:
        turns.append(patience)

    jobs = {job.id: job for job in periodic_jobs(h.app[RUNTIME])}
    for job_id in ("metrics-rollup", "cohorts-refresh", "retention"):
        turns.clear()
        await _logged(jobs[job_id], GiveWay(lambda: False, quiet=quiet))()
        assert turns, f"{job_id} took the connection without waiting its turn"
