"""The SOP engine's harness: the simulated WeCom, guidebot, playbooks in a temporary sop/.

The same corp as tests/contacts (stores 11 张江店 with g1 and g3, 12 徐汇店 with g2; customers
wmc1..wmc3). The clock starts on Friday 2026-03-13 at 20:55 in Asia/Shanghai. Playbooks are
YAML files written into the test's own sop directory, with the repository's message templates
copied beside it, and loaded by the real loader and registry.
"""

from __future__ import annotations

import shutil
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from guidebot.app import create_app
from guidebot.clock import FakeClock
from guidebot.sop.actions.base import TickReport
from guidebot.sop.jobs import sop_triggers
from guidebot.sop.models import SopEnrollment, SopTask
from guidebot.sop.reconcile import reconcile_sending
from guidebot.sop.results import poll_send_results
from guidebot.sop.tick import tick
from guidebot.web.keys import INBOX_WORKER, SESSIONS, SOP
from guidebot.web.startup import CONTACTS_STARTUP
from guidebot.wecom.simulator import SIMULATOR_STATE, SimulatorConfig, create_simulator_app
from tests.contacts.conftest import ADMIN, seed_corp
from tests.support import TEST_IDENTITY, make_settings

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Friday 20:55 in Shanghai.
FRIDAY_2055 = datetime(2026, 3, 13, 20, 55, tzinfo=SHANGHAI).astimezone(UTC)
REPO = Path(__file__).resolve().parents[2]

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


class SopHarness:
    def __init__(self, sim: Any, client: Any, clock: FakeClock, sop_dir: Path) -> None:
        self.sim = sim
        self.client = client
        self.clock = clock
        self.sop_dir = sop_dir

    @property
    def app(self):
        return self.client.server.app

    @property
    def sim_state(self):
        return self.sim.server.app[SIMULATOR_STATE]

    @property
    def sessions(self):
        return self.app[SESSIONS]

    @property
    def runtime(self):
        return self.app[SOP]

    def set_time(self, local: datetime) -> datetime:
        self.clock.set(local)
        return self.clock.now()

    def advance(self, delta: timedelta) -> datetime:
        self.clock.advance(delta)
        return self.clock.now()

    # -- playbooks -----------------------------------------------------------------------

    def write_playbook(self, text: str, name: str | None = None) -> Path:
        text = textwrap.dedent(text).strip() + "\n"
        if name is None:
            name = next(
                line.split(":", 1)[1].strip()
                for line in text.splitlines()
                if line.startswith("playbook:")
            )
        path = self.sop_dir / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    def reload(self) -> list:
        loaded = self.app[SOP].registry.reload()
        broken = [str(e) for item in loaded for e in item.errors]
        assert not broken, broken
        return loaded

    # -- the simulated WeCom -------------------------------------------------------------

    async def control(self, path: str, payload: Any = None, *, status: int = 200) -> dict:
        response = await self.sim.post(f"/_sim/{path}", json=payload or {})
        data = await response.json()
        assert response.status == status, data
        return data

    async def add(self, userid: str, ext: str, **extra: Any) -> dict:
        answer = await self.control(
            "contact/add", {"userid": userid, "external_userid": ext, "welcome_code": True, **extra}
        )
        assert answer.get("delivered"), answer
        await self.drain()
        return answer

    async def act(self, path: str, payload: dict[str, Any]) -> dict:
        answer = await self.control(path, payload)
        assert answer.get("delivered"), answer
        await self.drain()
        return answer

    async def deliver(self, xml: str) -> dict:
        answer = await self.control("callbacks", {"xml": xml})
        assert answer["delivered"], answer
        return answer

    async def calls(self, api: str) -> list[dict]:
        response = await self.sim.get("/_sim/calls", params={"api": api})
        return (await response.json())["calls"]

    async def welcomes(self) -> list[dict]:
        response = await self.sim.get("/_sim/welcomes")
        return (await response.json())["welcomes"]

    async def app_messages(self, userid: str) -> list[dict]:
        response = await self.sim.get("/_sim/app_messages", params={"userid": userid})
        return (await response.json())["messages"]

    async def confirm(self, msgid: str, userid: str) -> dict:
        return await self.control("groupmsg/confirm", {"msgid": msgid, "userid": userid})

    # -- guidebot ------------------------------------------------------------------------

    async def drain(self) -> int:
        worker = self.app[INBOX_WORKER]
        handled = await worker.drain()
        await worker.settle()  # the welcome fast path runs right after the commit
        return handled

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

    async def api(self, method: str, path: str, **kwargs: Any):
        response = await self.client.request(method, f"/api/v1{path}", headers=ADMIN, **kwargs)
        return response.status, await response.json()


def local(instant: datetime) -> datetime:
    return instant.astimezone(SHANGHAI)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(FRIDAY_2055)


@pytest.fixture
def sop_dir(tmp_path) -> Path:
    root = tmp_path / "deploy"
    (root / "sop").mkdir(parents=True)
    shutil.copytree(REPO / "templates" / "messages", root / "templates" / "messages")
    return root / "sop"


@pytest.fixture
def playbooks() -> list[str]:
    """The playbooks a test starts with (override in a module or use h.write_playbook)."""
    return [FIRST_CONTACT, FOLLOW_UP]


async def make_harness(aiohttp_client, database_url, clock, sop_dir, playbooks) -> SopHarness:
    for text in playbooks:
        text = textwrap.dedent(text).strip() + "\n"
        name = next(
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if line.startswith("playbook:")
        )
        (sop_dir / f"{name}.yaml").write_text(text, encoding="utf-8")
    sim = await aiohttp_client(
        create_simulator_app(SimulatorConfig(identity=TEST_IDENTITY, clock=clock.time))
    )
    await seed_corp(sim)
    settings = make_settings(
        database_url, wecom_api_base=str(sim.make_url("/")), sop_dir=str(sop_dir)
    )
    client = await aiohttp_client(create_app(settings, clock=clock, run_workers=False))
    response = await sim.post(
        "/_sim/config", json={"callback_url": str(client.make_url("/wecom/callback"))}
    )
    assert response.status == 200
    await client.server.app[CONTACTS_STARTUP]
    harness = SopHarness(sim, client, clock, sop_dir)
    harness.reload()
    harness.app[SOP].sleep = _no_sleep
    return harness


async def _no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
async def h(aiohttp_client, database_url, clock, sop_dir, playbooks) -> SopHarness:
    return await make_harness(aiohttp_client, database_url, clock, sop_dir, playbooks)
