"""The SOP engine's harness: tests/harness.py with playbooks in a temporary sop/.

The corp of tests/harness.py (stores 11 张江店 with g1 and g3, 12 徐汇店 with g2; customers
wmc1..wmc3). The clock starts on Friday 2026-03-13 at 20:55 in Asia/Shanghai. Playbooks are
YAML files written into the test's own sop directory, with the repository's message templates
copied beside it, and loaded by the real loader and registry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from guidebot.clock import FakeClock
from guidebot.sop.actions.base import TickReport
from guidebot.sop.jobs import sop_triggers
from guidebot.sop.models import SopEnrollment, SopTask
from guidebot.sop.reconcile import reconcile_sending
from guidebot.sop.results import poll_send_results
from guidebot.sop.tick import tick
from guidebot.web.keys import SOP
from tests.harness import (
    REPO,
    SHANGHAI,
    Harness,
    deploy_dir,
    reload_playbooks,
    start_harness,
    started_playbooks,
    write_playbook,
)

# Friday 20:55 in Shanghai.
FRIDAY_2055 = datetime(2026, 3, 13, 20, 55, tzinfo=SHANGHAI).astimezone(UTC)
__all__ = ["REPO", "SHANGHAI"]

FIRST_CONTACT = """
playbook: first_contact
version: 1
trigger:
  event: customer.added
enroll:
  once_per: relation
timezone: Asia/Shanghai
send_window:
  hours: "10:00-21:00"
  days: mon-sun
stop_when: [contact.lost, contact.removed]
steps:
  - id: welcome
    at: enroll
    action: welcome
    template: welcome.j2
    expire_after: 20s
  - id: day1_intro
    at: welcome + 1d
    action: remind
    template: remind_day1_intro.j2
    expire_after: 1d
"""

FOLLOW_UP = """
playbook: follow_up_7d
version: 1
trigger:
  event: customer.added
enroll:
  once_per: relation
timezone: Asia/Shanghai
send_window:
  hours: "10:00-21:00"
  days: mon-sun
stop_when: [contact.lost, contact.removed, order.paid]
max_messages_per_day: 1
steps:
  - id: day3
    at: enroll + 3d
    action: guide_task
    template: follow_up_day3.j2
    expire_after: 1d
  - id: day7
    at: enroll + 7d
    action: guide_task
    template: follow_up_day7.j2
    expire_after: 2d
"""


class SopHarness(Harness):
    @property
    def runtime(self):
        return self.app[SOP]

    # -- playbooks -----------------------------------------------------------------------

    def write_playbook(self, text: str, name: str | None = None) -> Path:
        return write_playbook(self.sop_dir, text, name)

    def reload(self) -> list:
        return reload_playbooks(self)

    # -- the simulated WeCom -------------------------------------------------------------

    async def add(self, userid: str, ext: str, **extra: Any) -> dict:
        return await super().add(userid, ext, **{"welcome_code": True, **extra})

    async def deliver(self, xml: str, *, drain: bool = False) -> dict:
        return await super().deliver(xml, drain=drain)

    async def confirm(self, msgid: str, userid: str) -> dict:
        return await self.control("groupmsg/confirm", {"msgid": msgid, "userid": userid})

    # -- guidebot ------------------------------------------------------------------------

    async def tick(self) -> TickReport:
        return await tick(self.runtime, self.clock.now())

    async def poll(self):
        return await poll_send_results(self.runtime, self.clock.now())

    async def reconcile(self, *, everything: bool = False):
        return await reconcile_sending(self.runtime, self.clock.now(), everything=everything)

    async def triggers(self):
        return await sop_triggers(self.runtime, self.clock.now())

    async def tasks(self, **where: Any) -> list[SopTask]:
        query = select(SopTask).order_by(SopTask.due_at, SopTask.id)
        for key, value in where.items():
            query = query.where(getattr(SopTask, key) == value)
        async with self.sessions() as session:
            return list(await session.scalars(query))

    async def task(self, guide: str, ext: str, step: str) -> SopTask:
        [found] = await self.tasks(guide_userid=guide, external_userid=ext, step_id=step)
        return found

    async def enrollments(self, **where: Any) -> list[SopEnrollment]:
        query = select(SopEnrollment).order_by(SopEnrollment.id)
        for key, value in where.items():
            query = query.where(getattr(SopEnrollment, key) == value)
        async with self.sessions() as session:
            return list(await session.scalars(query))


def local(instant: datetime) -> datetime:
    return instant.astimezone(SHANGHAI)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(FRIDAY_2055)


@pytest.fixture
def sop_dir(tmp_path) -> Path:
    return deploy_dir(tmp_path / "deploy")


@pytest.fixture
def playbooks() -> list[str]:
    """The playbooks a test starts with (override in a module or use h.write_playbook)."""
    return [FIRST_CONTACT, FOLLOW_UP]


async def make_harness(aiohttp_client, database_url, clock, sop_dir, playbooks) -> SopHarness:
    for text in playbooks:
        write_playbook(sop_dir, text)
    harness = await start_harness(
        aiohttp_client, database_url, clock, kind=SopHarness, sop_dir=sop_dir
    )
    started_playbooks(harness)
    return harness


@pytest.fixture
async def h(aiohttp_client, database_url, clock, sop_dir, playbooks) -> SopHarness:
    return await make_harness(aiohttp_client, database_url, clock, sop_dir, playbooks)
