"""The metrics tests' harness: simulated WeCom, guidebot with a small playbook, a fake clock.

The corp of tests/harness.py (region 10; store 11 张江店 with g1 and g3; store 12 徐汇店 with
g2) plus customers wmc01..wmc12 (c01.. in comments). Adds and deletes go through the simulator
and guidebot's real callback path; SOP tasks through the real engine (enroll on add, tick,
complete/skip); forwards through content's record_forward, opens through the real /r/{token}
route; orders through POST /api/v1/orders. `settle()` runs the rollup job as the scheduler
would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from guidebot.clock import FakeClock
from guidebot.content import links
from guidebot.content.service import create_item, record_forward
from guidebot.metrics.models import GuideDaily
from guidebot.metrics.rollup import RefreshReport, refresh
from guidebot.sop.models import SopTask
from guidebot.sop.task_marks import complete_task, skip_task
from guidebot.sop.tick import tick
from guidebot.web.keys import SOP
from tests.harness import (
    SHANGHAI,
    Harness,
    deploy_dir,
    start_harness,
    started_playbooks,
    write_playbook,
)

__all__ = ["SHANGHAI"]

PLAYBOOK = """
playbook: week_sop
version: 1
name: 测试欢迎与次日提醒
trigger:
  event: customer.added
enroll:
  once_per: relation
timezone: Asia/Shanghai
send_window:
  hours: "09:00-21:00"
  days: mon-sun
stop_when: [contact.lost, contact.removed, order.paid]
goal: {event: order.paid, within: 7d}
steps:
  - id: welcome
    at: enroll
    action: welcome
    template: welcome.j2
    expire_after: 20s
  - id: call
    at: welcome + 1d
    action: remind
    template: remind_day1_intro.j2
    expire_after: 1d
"""


CUSTOMERS = [{"external_userid": f"wmc{n:02d}", "name": f"顾客{n:02d}"} for n in range(1, 13)]


CUSTOMERS = [{"external_userid": f"wmc{n:02d}", "name": f"顾客{n:02d}"} for n in range(1, 13)]


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    """A Shanghai wall-clock time in 2026 (March by default)."""
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


class MetricsHarness(Harness):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._item_count = 0

    async def add(self, guide: str, ext: str, *, code: bool = True) -> dict:
        return await self.act(
            "contact/add", {"userid": guide, "external_userid": ext, "welcome_code": code}
        )

    async def lose(self, guide: str, ext: str) -> dict:
        return await self.act(
            "contact/delete_by_customer", {"userid": guide, "external_userid": ext}
        )

    async def remove(self, guide: str, ext: str) -> dict:
        return await self.act("contact/delete_by_guide", {"userid": guide, "external_userid": ext})

    async def edit(self, guide: str, ext: str, **fields: Any) -> dict:
        return await self.act("contact/edit", {"userid": guide, "external_userid": ext, **fields})

    async def move(self, guide: str, name: str, department: int) -> dict:
        return await self.act(
            "users", {"userid": guide, "name": name, "department": [department], "notify": True}
        )

    # -- guidebot ------------------------------------------------------------------------

    async def tick(self):
        return await tick(self.app[SOP], self.clock.now())

    async def task(self, guide: str, ext: str, step: str) -> SopTask:
        async with self.sessions() as session:
            [found] = list(
                await session.scalars(
                    select(SopTask).where(
                        SopTask.guide_userid == guide,
                        SopTask.external_userid == ext,
                        SopTask.step_id == step,
                    )
                )
            )
            return found

    async def complete(self, guide: str, ext: str, step: str = "call") -> SopTask:
        task = await self.task(guide, ext, step)
        async with self.sessions() as session, session.begin():
            return await complete_task(
                session, task.id, "guide", self.clock.now(), guide_userid=guide
            )

    async def skip(self, guide: str, ext: str, reason: str, step: str = "call") -> SopTask:
        task = await self.task(guide, ext, step)
        async with self.sessions() as session, session.begin():
            return await skip_task(session, task.id, reason, self.clock.now(), guide_userid=guide)

    async def item(self, title: str) -> int:
        self._item_count += 1
        async with self.sessions() as session, session.begin():
            item = await create_item(
                session,
                {
                    "kind": "link",
                    "title": title,
                    "url": f"https://brand.example/{self._item_count}",
                },
                self.clock.now(),
            )
            return item.id

    async def forward(self, guide: str, ext: str, item_id: int) -> str:
        """The guide sends the item from the sidebar; the tracked link's token."""
        now = self.clock.now()
        token, claims = links.mint(
            self.settings.secret_key, item_id=item_id, guide=guide, now=now, customer=ext
        )
        async with self.sessions() as session, session.begin():
            assert await record_forward(
                session,
                ref=f"l:{claims.nonce}",
                item_id=item_id,
                guide=guide,
                customer=ext,
                via="sidebar",
                sent_at=now,
                now=now,
            )
        return token

    async def open(self, token: str) -> None:
        response = await self.client.get(f"/r/{token}", allow_redirects=False)
        assert response.status in (200, 302, 303), await response.text()

    async def settle(self) -> RefreshReport:
        """What the metrics-rollup job does every 5 s."""
        return await refresh(self.sessions, self.settings.timezone, self.clock.now())

    async def rows(self) -> list[tuple]:
        async with self.sessions() as session:
            found = await session.scalars(
                select(GuideDaily).order_by(
                    GuideDaily.guide_userid, GuideDaily.day, GuideDaily.store_id
                )
            )
            return [
                tuple(
                    getattr(r, c.name)
                    for c in GuideDaily.__table__.columns
                    if c.name != "computed_at"
                )
                for r in found
            ]

    async def order(self, body: dict[str, Any], status: int | None = None) -> dict:
        code, answer = await self.api("POST", "/orders", json=body)
        if status is not None:
            assert code == status, answer
        return answer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(9, 9, 0))


@pytest.fixture
def sop_dir(tmp_path) -> Path:
    sop_dir = deploy_dir(tmp_path / "deploy")
    write_playbook(sop_dir, PLAYBOOK)
    return sop_dir


async def make_harness(aiohttp_client, database_url, clock, sop_dir, **settings) -> MetricsHarness:
    # A token that outlives the scripted weeks: refreshing an expired one from inside a handler's
    # transaction waits out SQLite's busy timeout (10 s) in this harness, which would only slow
    # the tests down.
    harness = await start_harness(
        aiohttp_client,
        database_url,
        clock,
        kind=MetricsHarness,
        sop_dir=sop_dir,
        simulator={"token_ttl": 400 * 86_400},
        customers=CUSTOMERS,
        **settings,
    )
    started_playbooks(harness)
    # The rollup is not settled here: the start-up sync's dirty rows wait for the test's own
    # `settle`, as they would for the job's next run. Settling each harness at its start was
    # 7% of the CPU of the suites built on it (111 s became 103 s), and many never read a figure.
    return harness


@pytest.fixture
async def h(aiohttp_client, database_url, clock, sop_dir) -> MetricsHarness:
    return await make_harness(aiohttp_client, database_url, clock, sop_dir)


def utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)


def days(first: datetime, n: int) -> list[datetime]:
    return [first + timedelta(days=i) for i in range(n)]
