"""The privacy tests' scene: the metrics harness (tests/metrics/conftest.py) with a week of
real traffic: adds, a welcome playbook's reminders done and skipped, a forward sent twice and
opened, an order, a customer lost, a guide's bot messages, a failed callback."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from guidebot.bot.models import BotReply, ReplyStatus
from guidebot.clock import FakeClock
from guidebot.intake.models import InboxEvent, InboxStatus
from guidebot.metrics.report import Period, Scope, metrics
from tests.harness import deploy_dir, write_playbook
from tests.metrics.conftest import PLAYBOOK, MetricsHarness, at, make_harness

MARCH = Period(date(2026, 3, 1), date(2026, 3, 31))
REMARK = "陈女士-VIP老客"
DESCRIPTION = "喜欢红色连衣裙，住在浦东"
MOBILE = "13800138000"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(9, 9, 0))


@pytest.fixture
def sop_dir(tmp_path) -> Path:
    sop_dir = deploy_dir(tmp_path / "deploy")
    write_playbook(sop_dir, PLAYBOOK)
    return sop_dir


@pytest.fixture
async def h(aiohttp_client, database_url, clock, sop_dir) -> MetricsHarness:
    return await make_harness(aiohttp_client, database_url, clock, sop_dir)


@dataclass
class Scene:
    item: int
    token: str


async def busy_week(h: MetricsHarness) -> Scene:
    """Traffic on 9-11 March 2026 (Shanghai), all of it through guidebot's real paths."""
    h.set_time(at(9, 10))
    for guide, ext in (("g1", "wmc01"), ("g1", "wmc02"), ("g2", "wmc03"), ("g3", "wmc04")):
        await h.add(guide, ext)
    await h.edit("g1", "wmc01", remark=REMARK, description=DESCRIPTION, remark_mobiles=[MOBILE])
    item = await h.item("春季新品")
    token = await h.forward("g1", "wmc01", item)
    h.advance(timedelta(minutes=5))
    await h.forward("g1", "wmc01", item)  # a repeat: counts once
    await h.open(token)
    h.advance(timedelta(minutes=5))
    await h.open(token)
    h.set_time(at(10, 10))
    await h.tick()  # the day-1 reminders
    await h.complete("g1", "wmc01")
    paid = at(10, 11).isoformat()
    order = {"order_id": "o-1", "external_userid": "wmc01", "amount": "399.00", "paid_at": paid}
    await h.order(order, status=201)
    await h.skip("g1", "wmc02", "客户在外地")
    await h.lose("g2", "wmc03")
    async with h.sessions() as session, session.begin():
        now = h.clock.now()
        for n, status in enumerate((ReplyStatus.SENT, ReplyStatus.PASSIVE, ReplyStatus.PENDING)):
            session.add(
                BotReply(
                    msg_id=f"m{n}",
                    guide_userid="g1",
                    request=f"查一下 {REMARK} 的任务",
                    reply={"text": "好的"},
                    status=status,
                    created_at=now,
                    updated_at=now,
                )
            )
        session.add(
            InboxEvent(
                dedupe_key="failed-1",
                kind="change_external_contact:edit_external_contact",
                customer_key="wmc01",
                payload=f"<xml><Remark>{REMARK}</Remark></xml>",
                received_at=now,
                status=InboxStatus.FAILED,
                attempts=8,
                next_attempt_at=now,
                last_error="boom",
            )
        )
    h.set_time(at(11, 12))
    await h.settle()
    return Scene(item, token)


async def kpis(h: MetricsHarness, period: Period = MARCH) -> dict:
    """Everyone's KPIs over the period (March), by day, and the rollup rows themselves."""
    async with h.sessions() as session:
        total, by_day = await metrics(session, Scope(), period, by_day=True)
        per_guide = {
            g: (await metrics(session, Scope(guide=g), period))[0] for g in ("g1", "g2", "g3")
        }
    return {"total": total, "days": by_day, "guides": per_guide, "rows": await h.rows()}


async def inbox(h: MetricsHarness) -> list[InboxEvent]:
    async with h.sessions() as session:
        return list(await session.scalars(select(InboxEvent).order_by(InboxEvent.id)))
