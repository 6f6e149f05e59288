"""One row the rollup cannot handle never stops every guide's figures again.

The row: an add whose instant is in year 9999, written straight into the event log (the
callback refuses such instants; an older version, an import or a hand edit may not have).
Converting it to the store's time zone overflows. It used to fail the whole `metrics-rollup`
run, every run, while `metrics_dirty` grew and `guidebot report guides` crashed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, insert, select

from guidebot.contacts.models import RelationEvent
from guidebot.db.parking import ParkedRow, retry
from guidebot.metrics.models import GuideDaily, MetricsDirty
from guidebot.metrics.report import report_guides
from guidebot.metrics.rollup import backfill
from tests.metrics.conftest import at

YEAR_9999 = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)


async def write_event_in_year_9999(h, guide: str = "g1", customer: str = "wmc09") -> int:
    async with h.sessions() as session, session.begin():
        return (
            await session.execute(
                insert(RelationEvent)
                .values(
                    occurred_at=YEAR_9999,
                    recorded_at=h.clock.now(),
                    kind="added",
                    guide_userid=guide,
                    store_id=11,
                    external_userid=customer,
                    source="callback",
                )
                .returning(RelationEvent.id)
            )
        ).scalar_one()


async def added(h) -> dict[str, int]:
    async with h.sessions() as session:
        rows = await session.execute(
            select(GuideDaily.guide_userid, func.sum(GuideDaily.added)).group_by(
                GuideDaily.guide_userid
            )
        )
        return {guide: int(n) for guide, n in rows}


async def parked(h) -> list[ParkedRow]:
    async with h.sessions() as session:
        return list(await session.scalars(select(ParkedRow).order_by(ParkedRow.id)))


async def dirty(h) -> list[MetricsDirty]:
    async with h.sessions() as session:
        return list(await session.scalars(select(MetricsDirty)))


async def test_the_rollup_parks_a_row_it_cannot_place_and_counts_the_others(h, caplog):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await write_event_in_year_9999(h)
    await h.add("g2", "wmc04")
    h.set_time(at(9, 11))
    await h.add("g1", "wmc02")

    report = await h.settle()
    assert report.parked == 1 and not report.busy
    assert await added(h) == {"g1": 2, "g2": 1}  # everyone else's figures, bad row or not
    [row] = await parked(h)
    assert (row.job, row.table_name, row.count) == ("metrics-rollup", "metrics_dirty", 1)
    assert row.reason.startswith("OverflowError")
    assert "g1/wmc09" in row.detail and "9999-12-31" in row.detail
    [left] = await dirty(h)  # only the parked trail row stays: the queue no longer grows
    assert str(left.id) == row.row_key
    assert any("parked metrics_dirty" in r.getMessage() for r in caplog.records)

    # Later runs skip it (it is logged once) and keep counting.
    h.set_time(at(9, 12))
    await h.add("g2", "wmc05")
    report = await h.settle()
    assert report.parked == 0
    assert await added(h) == {"g1": 2, "g2": 2}
    assert [(r.count, r.first_seen) for r in await parked(h)] == [(1, row.first_seen)]

    # Handed back (`guidebot jobs retry`), it is tried again: still bad, parked again.
    async with h.sessions() as session, session.begin():
        assert await retry(session, job="metrics-rollup") == 1
    assert (await h.settle()).parked == 1
    assert len(await dirty(h)) == 1


async def test_guidebot_report_guides_reports_everyone_else_despite_the_row(h, caplog):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g2", "wmc04")
    await write_event_in_year_9999(h)
    assert (await h.settle()).parked == 1  # the job met it first
    h.set_time(at(9, 11))
    await h.add("g1", "wmc02")

    caplog.clear()
    status, table = await report_guides(
        h.settings.database_url,
        raw_from="2026-03-09",
        raw_to="2026-03-09",
        store=None,
        fmt="table",
        timezone="Asia/Shanghai",
        now=h.clock.now(),
    )
    assert status == 0
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
    assert rows["g1"][3] == "2" and rows["g2"][3] == "1"  # new_customers
    assert [(r.job, r.table_name) for r in await parked(h)] == [("metrics-rollup", "metrics_dirty")]
    # The operator is told the figures leave a row out, and where to look.
    warnings = [r.getMessage() for r in caplog.records if r.name == "guidebot.metrics.report"]
    assert any("1" in w and "guidebot jobs parked" in w for w in warnings), warnings


async def test_the_first_run_builds_every_guide_but_the_one_it_cannot(h):
    h.set_time(at(9, 10))
    await h.add("g2", "wmc04")
    await write_event_in_year_9999(h, guide="g3")  # g3's only history
    async with h.sessions() as session, session.begin():
        await session.execute(MetricsDirty.__table__.delete())
        await session.execute(GuideDaily.__table__.delete())

    assert await backfill(h.sessions, h.settings.timezone, h.clock.now()) == 2
    assert await added(h) == {"g2": 1}
    # The guide left over is queued, and parked by the next run with what went wrong.
    await h.settle()
    [row] = await parked(h)
    assert (row.table_name, row.reason.split(":")[0]) == ("metrics_dirty", "OverflowError")
    assert row.detail == "membership history of g3 at 9999-12-31T23:00:00+00:00"
