"""Several claimers on one PostgreSQL database never run one SOP task twice.

Three tick loops, each on its own engine (as three guidebot instances would be), race over
thousands of due rows. FOR UPDATE SKIP LOCKED with a lease hands every row to exactly one of
them; the fake WeCom counts what each customer was sent.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from guidebot.clock import FakeClock
from guidebot.contacts.models import Customer, Department, Guide, Relation
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.db.migrate import upgrade
from guidebot.sop.context import SopRuntime
from guidebot.sop.models import SopEnrollment, SopTask
from guidebot.sop.registry import load_registry
from guidebot.sop.tick import tick
from guidebot.wecom.client import MsgTemplateResult
from tests.conftest import reset_pg
from tests.support import make_settings

pytestmark = pytest.mark.pg

NOW = datetime(2026, 3, 16, 4, 0, tzinfo=UTC)
GUIDES = 40
CUSTOMERS_PER_GUIDE = 75  # 3,000 due guide tasks
CLAIMERS = 3


class CountingWeCom:
    """Stands in for WeCom: records every mass-send task and reminder, slowly enough that the
    claimers' work interleaves."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.calls: list[tuple[str, int]] = []
        self.reminders = 0

    async def add_msg_template(self, *, external_userids, sender, text, **_: Any):
        await asyncio.sleep(random.uniform(0, 0.003))
        self.sent.update(external_userids)
        self.calls.append((sender, len(external_userids)))
        return MsgTemplateResult(f"msg{len(self.calls)}", ())

    async def send_textcard(self, *args: Any, **kwargs: Any) -> None:
        self.reminders += 1


async def _seed(url: str) -> int:
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    async with sessions() as session, session.begin():
        await session.execute(
            insert(Department).values(
                id=11, name="张江店", code="SH011", is_store=True, sort_order=0, updated_at=NOW
            )
        )
        guides = [f"g{i:03d}" for i in range(GUIDES)]
        await session.execute(
            insert(Guide),
            [{"userid": g, "name": g, "status": "active", "updated_at": NOW} for g in guides],
        )
        pairs = [(g, f"wm{g}c{c:03d}") for g in guides for c in range(CUSTOMERS_PER_GUIDE)]
        await session.execute(
            insert(Customer),
            [
                {"external_userid": ext, "name": ext, "created_at": NOW, "updated_at": NOW}
                for _, ext in pairs
            ],
        )
        await session.execute(
            insert(Relation),
            [
                {
                    "guide_userid": g,
                    "external_userid": ext,
                    "status": "active",
                    "store_id": 11,
                    "tags": [],
                    "remark_mobiles": [],
                    "last_event_at": NOW,
                    "updated_at": NOW,
                }
                for g, ext in pairs
            ],
        )
        settings = {
            "name": "claim test",
            "send_window": None,
            "max_messages_per_day": 5,
            "stop_when": [],
        }
        ids = (
            await session.execute(
                insert(SopEnrollment).returning(SopEnrollment.id),
                [
                    {
                        "playbook_id": "claim",
                        "playbook_version": 1,
                        "scope": g,
                        "guide_userid": g,
                        "external_userid": ext,
                        "store_id": 11,
                        "timezone": "Asia/Shanghai",
                        "trigger": "customer.added",
                        "cycle": "0",
                        "status": "active",
                        "enrolled_at": NOW - timedelta(days=3),
                        "settings": settings,
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                    for g, ext in pairs
                ],
            )
        ).scalars()
        await session.execute(
            insert(SopTask),
            [
                {
                    "enrollment_id": eid,
                    "step_id": "day3",
                    "playbook_id": "claim",
                    "playbook_version": 1,
                    "guide_userid": g,
                    "external_userid": ext,
                    "action": "guide_task",
                    "template": "t.j2",
                    "due_at": NOW - timedelta(seconds=i % 600),
                    "expires_at": NOW + timedelta(days=1),
                    "status": "pending",
                    "attempts": 0,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for i, (eid, (g, ext)) in enumerate(zip(ids, pairs, strict=True))
            ],
        )
    await engine.dispose()
    return len(pairs)


async def test_three_claimers_never_run_a_task_twice(pg_url, tmp_path):
    await reset_pg(pg_url)
    await upgrade(pg_url)
    total = await _seed(pg_url)
    (tmp_path / "sop").mkdir()
    (tmp_path / "templates" / "messages").mkdir(parents=True)
    (tmp_path / "templates" / "messages" / "t.j2").write_text("{{ guide.name }} 的新品推荐")
    settings = make_settings(pg_url, sop_dir=str(tmp_path / "sop"))
    wecom = CountingWeCom()
    clock = FakeClock(NOW)
    engines = [create_engine(pg_url, pool_size=2) for _ in range(CLAIMERS)]
    registry = load_registry(settings.sop_dir)
    runtimes = [
        SopRuntime(
            create_session_factory(engine),
            wecom,  # type: ignore[arg-type]
            clock,
            settings,
            registry,
            owner=f"claimer-{n}",
            batch_size=100,
            max_batches=1,
        )
        for n, engine in enumerate(engines)
    ]

    async def loop(runtime: SopRuntime) -> int:
        claimed = 0
        idle = 0
        while idle < 3:
            report = await tick(runtime, NOW)
            claimed += report.claimed
            idle = 0 if report.claimed else idle + 1
        return claimed

    try:
        per_claimer = await asyncio.wait_for(asyncio.gather(*(loop(r) for r in runtimes)), 120)
        async with runtimes[0].sessions() as session:
            statuses = dict(
                (
                    await session.execute(
                        select(SopTask.status, func.count()).group_by(SopTask.status)
                    )
                ).all()
            )
            owners = dict(
                (
                    await session.execute(
                        select(SopTask.claimed_by, func.count()).group_by(SopTask.claimed_by)
                    )
                ).all()
            )
    finally:
        for engine in engines:
            await engine.dispose()

    assert statuses == {"sent": total}
    assert sum(per_claimer) == total  # every row claimed exactly once
    assert len(wecom.sent) == total and set(wecom.sent.values()) == {1}
    assert sum(owners.values()) == total
    assert len([n for n in per_claimer if n]) == CLAIMERS, per_claimer  # they really raced
    # One add_msg_template per guide per batch at most: grouped, not one per customer.
    assert len(wecom.calls) < total / 10
