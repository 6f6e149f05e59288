"""The metrics tests' harness: simulated WeCom, guidebot with a small playbook, a fake clock.

Same corp as tests/contacts (region 10; store 11 张江店 with g1 and g3; store 12 徐汇店 with
g2) plus customers wmc01..wmc12 (c01.. in comments). Adds and deletes go through the simulator
and guidebot's real callback path; SOP tasks through the real engine (enroll on add, tick,
complete/skip); forwards through content's record_forward, opens through the real /r/{token}
route; orders through POST /api/v1/orders. `settle()` runs the rollup job as the scheduler
would.
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
from guidebot.content import links
from guidebot.content.service import create_item, record_forward
from guidebot.metrics.models import GuideDaily
from guidebot.metrics.rollup import RefreshReport, refresh
from guidebot.sop.models import SopTask
from guidebot.sop.task_marks import complete_task, skip_task
from guidebot.sop.tick import tick
from guidebot.web.keys import INBOX_WORKER, SESSIONS, SETTINGS, SOP
from guidebot.web.startup import CONTACTS_STARTUP
from guidebot.wecom.simulator import SIMULATOR_STATE, SimulatorConfig, create_simulator_app
from tests.contacts.conftest import ADMIN, seed_corp
from tests.support import TEST_IDENTITY, make_settings

SHANGHAI = ZoneInfo("Asia/Shanghai")
REPO = Path(__file__).resolve().parents[2]

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


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    """A Shanghai wall-clock time in 2026 (March by default)."""
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


class MetricsHarness:
    def __init__(self, sim: Any, client: Any, clock: FakeClock) -> None:
        self.sim = sim
        self.client = client
        self.clock = clock
        self._item_count = 0

    @property
    def app(self):
        return self.client.server.app

    @property
    def sessions(self):
        return self.app[SESSIONS]

    @property
    def settings(self):
        return self.app[SETTINGS]

    @property
    def sim_state(self):
        return self.sim.server.app[SIMULATOR_STATE]

    def set_time(self, instant: datetime) -> datetime:
        self.clock.set(instant)
        return self.clock.now()

    # -- the simulated WeCom -------------------------------------------------------------

    async def control(self, path: str, payload: Any = None, *, status: int = 200) -> dict:
        response = await self.sim.post(f"/_sim/{path}", json=payload or {})
        data = await response.json()
        assert response.status == status, data
        return data

    async def act(self, path: str, payload: dict[str, Any]) -> dict:
        answer = await self.control(path, payload)
        assert answer.get("delivered"), answer
        await self.drain()
        return answer

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

    async def fault(self, api: str, errcode: int, times: int = 1) -> None:
        await self.control("faults", {"api": api, "errcode": errcode, "times": times})

    async def calls(self, api: str) -> list[dict]:
        response = await self.sim.get("/_sim/calls", params={"api": api})
        return (await response.json())["calls"]

    async def app_messages(self, userid: str) -> list[dict]:
        response = await self.sim.get("/_sim/app_messages", params={"userid": userid})
        return (await response.json())["messages"]

    # -- guidebot ------------------------------------------------------------------------

    async def drain(self) -> int:
        worker = self.app[INBOX_WORKER]
        handled = await worker.drain()
        await worker.settle()  # the welcome fast path runs right after the commit
        return handled

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

    async def api(self, method: str, path: str, *, auth: bool = True, **kwargs: Any):
        response = await self.client.request(
            method, f"/api/v1{path}", headers=ADMIN if auth else {}, **kwargs
        )
        return response.status, await response.json()

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
    root = tmp_path / "deploy"
    (root / "sop").mkdir(parents=True)
    shutil.copytree(REPO / "templates" / "messages", root / "templates" / "messages")
    (root / "sop" / "week_sop.yaml").write_text(textwrap.dedent(PLAYBOOK).strip() + "\n")
    return root / "sop"


async def _no_sleep(seconds: float) -> None:
    return None


async def make_harness(aiohttp_client, database_url, clock, sop_dir, **settings) -> MetricsHarness:
    # A token that outlives the scripted weeks: refreshing an expired one from inside a handler's
    # transaction waits out SQLite's busy timeout (10 s) in this harness, which would only slow
    # the tests down.
    sim = await aiohttp_client(
        create_simulator_app(
            SimulatorConfig(identity=TEST_IDENTITY, clock=clock.time, token_ttl=400 * 86_400)
        )
    )
    await seed_corp(sim)
    for n in range(1, 13):
        response = await sim.post(
            "/_sim/customers", json={"external_userid": f"wmc{n:02d}", "name": f"顾客{n:02d}"}
        )
        assert response.status == 200
    app_settings = make_settings(
        database_url, wecom_api_base=str(sim.make_url("/")), sop_dir=str(sop_dir), **settings
    )
    client = await aiohttp_client(create_app(app_settings, clock=clock, run_workers=False))
    response = await sim.post(
        "/_sim/config", json={"callback_url": str(client.make_url("/wecom/callback"))}
    )
    assert response.status == 200
    await client.server.app[CONTACTS_STARTUP]
    loaded = client.server.app[SOP].registry.reload()
    assert not [str(e) for item in loaded for e in item.errors]
    client.server.app[SOP].sleep = _no_sleep
    harness = MetricsHarness(sim, client, clock)
    await harness.settle()
    return harness


@pytest.fixture
async def h(aiohttp_client, database_url, clock, sop_dir) -> MetricsHarness:
    return await make_harness(aiohttp_client, database_url, clock, sop_dir)


def utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)


def days(first: datetime, n: int) -> list[datetime]:
    return [first + timedelta(days=i) for i in range(n)]
