"""Retention: each table pruned past its period, in bounded batches, the figures unmoved."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from guidebot.audit.models import AuditEntry
from guidebot.audit.recorder import Actor, record
from guidebot.bot.models import BotReply
from guidebot.config import ConfigError, Retention, Settings
from guidebot.content.models import (
    ContentForward,
    ContentOpen,
    ContentOpenVisitor,
    ContentVisitorCustomer,
)
from guidebot.content.opens import tie_visitor
from guidebot.intake.models import InboxStatus
from guidebot.metrics.models import LostAlert
from guidebot.metrics.rollup import recompute_all
from guidebot.privacy.retention import prune
from guidebot.sop.models import SopTask
from tests.privacy.conftest import REMARK, busy_week, inbox, kpis


async def _count(h, model) -> int:
    async with h.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)))


async def test_pruning_leaves_every_kpi_as_it_was(h):
    await busy_week(h)
    async with h.sessions() as session, session.begin():
        record(session, Actor("hq:alice", "hq"), "content.update", now=h.clock.now())
    async with h.sessions() as session, session.begin():  # the hour's alert went out
        await session.execute(update(LostAlert).values(batch="2026-03-10T10"))
    assert await _count(h, LostAlert) == 1
    h.advance(timedelta(days=500))
    await h.settle()  # cohorts matured: the figures are final
    before = await kpis(h)
    assert before["total"]["new_customers"] == 4
    assert before["total"]["forwards"] == 1 and before["total"]["unique_opens"] == 1
    assert await _count(h, SopTask) > 0 and await _count(h, ContentOpen) == 2

    retention = replace(Retention(), batch=2)
    report = await prune(h.sessions, retention, h.clock.now())
    assert report.largest_batch <= 2 and report.batches > 1, report
    assert report.rows["tasks"] > 0 and report.rows["opens"] == 2 and report.rows["forwards"] == 1

    # What the figures read is kept; what they no longer need is gone.
    assert await _count(h, ContentOpen) == 0 and await _count(h, LostAlert) == 0
    assert await _count(h, ContentForward) == 1  # the item's first forward to the customer
    assert await _count(h, ContentOpenVisitor) == 1
    async with h.sessions() as session:
        tasks = list(await session.scalars(select(SopTask.status)))
        replies = list(await session.scalars(select(BotReply.status)))
    assert all(s in ("pending", "sent", "snoozed", "claimed", "sending") for s in tasks), tasks
    assert replies == ["pending"]  # a reply not yet answered stays
    events = await inbox(h)
    done = [e for e in events if e.status == InboxStatus.DONE]
    assert done and all(e.payload == "" and e.customer_key is None for e in done)
    assert all(e.dedupe_key and e.kind for e in done)
    [failed] = [e for e in events if e.status == InboxStatus.FAILED]
    assert REMARK in failed.payload  # kept until replayed or dismissed
    async with h.sessions() as session:  # inside its own period
        assert "content.update" in set(await session.scalars(select(AuditEntry.action)))

    await h.settle()
    assert await kpis(h) == before
    # Even rebuilding every rollup from the (pruned) logs keeps the pruned days' figures.
    await recompute_all(h.sessions, h.settings.timezone, h.clock.now())
    assert await kpis(h) == before


async def test_several_instances_pruning_at_once_prune_each_row_once(h):
    await busy_week(h)
    h.advance(timedelta(days=500))
    await h.settle()
    before = await kpis(h)
    tasks = await _count(h, SopTask)
    retention = replace(Retention(), batch=1)
    reports = await asyncio.gather(*(prune(h.sessions, retention, h.clock.now()) for _ in range(3)))
    pruned = sum(r.rows.get("tasks", 0) for r in reports)
    assert pruned == tasks - await _count(h, SopTask)
    assert sum(r.rows.get("opens", 0) for r in reports) == 2
    assert all(r.largest_batch <= 1 for r in reports)
    await h.settle()
    assert await kpis(h) == before


async def test_nothing_is_pruned_inside_its_period_and_zero_keeps_forever(h):
    await busy_week(h)
    h.advance(timedelta(days=20))
    counts = [await _count(h, m) for m in (SopTask, ContentOpen, ContentForward, BotReply)]
    report = await prune(h.sessions, Retention(), h.clock.now())
    assert report.total == 0
    assert [await _count(h, m) for m in (SopTask, ContentOpen, ContentForward, BotReply)] == counts
    h.advance(timedelta(days=5000))
    forever = Retention(
        inbox_days=0,
        tasks_days=0,
        bot_replies_days=0,
        opens_days=0,
        forwards_days=0,
        alerts_days=0,
        audit_days=0,
    )
    assert (await prune(h.sessions, forever, h.clock.now())).total == 0


async def test_audit_entries_go_only_after_their_own_period(h):
    now = h.clock.now()
    async with h.sessions() as session, session.begin():
        record(session, Actor("hq:alice", "hq"), "old", now=now - timedelta(days=3651))
        record(session, Actor("hq:alice", "hq"), "recent", now=now - timedelta(days=3649))
    report = await prune(h.sessions, Retention(), now)
    assert report.rows["audit"] == 1
    async with h.sessions() as session:
        assert list(await session.scalars(select(AuditEntry.action))) == ["recent"]


def test_retention_settings_read_from_the_environment():
    from tests.support import make_settings

    base = make_settings("sqlite+aiosqlite:///x.db").as_env()
    settings = Settings.from_env(
        base | {"GUIDEBOT_RETENTION_TASKS_DAYS": "90", "GUIDEBOT_RETENTION_OPENS_DAYS": "0"}
    )
    assert settings.retention.tasks_days == 90 and settings.retention.opens_days == 0
    assert settings.retention.inbox_days == 30 and settings.retention.audit_days == 3650
    assert Settings.from_env(settings.as_env()).retention == settings.retention
    for name, value in (
        ("GUIDEBOT_RETENTION_OPENS_DAYS", "30"),  # under the attribution window's floor
        ("GUIDEBOT_RETENTION_TASKS_DAYS", "-1"),
        ("GUIDEBOT_RETENTION_BATCH", "0"),
    ):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env(base | {name: value})
        assert caught.value.variable == name


async def test_a_browser_stays_tied_to_a_customer_for_the_opens_period_after_it_last_was(h):
    now = h.clock.now()
    async with h.sessions() as session, session.begin():
        await tie_visitor(session, "old-browser", "wmc1", now - timedelta(days=500))
        await tie_visitor(session, "old-browser", "wmc2", now - timedelta(days=500))
        await tie_visitor(session, "phone", "wmc1", now - timedelta(days=500))
        await tie_visitor(session, "phone", "wmc1", now - timedelta(days=30))  # seen again
    report = await prune(h.sessions, replace(Retention(), batch=1), now)
    assert report.rows["visitor_ties"] == 2
    async with h.sessions() as session:
        kept = list(await session.execute(select(ContentVisitorCustomer.external_userid)))
    assert [row[0] for row in kept] == ["wmc1"]
