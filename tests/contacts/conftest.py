"""The contacts tests' harness: the simulated WeCom and guidebot, talking over real HTTP.

The simulator delivers every callback encrypted to guidebot's /wecom/callback; guidebot's
handlers call the simulator's /cgi-bin API. One fake clock drives both. Workers do not run on
their own: a test drains the inbox when it wants the events handled.

The corp every test starts with (synced into guidebot at start-up):

    1 corp
    └── 10 华东 (region)
        ├── 11 张江店 (store): g1, g3
        └── 12 徐汇店 (store): g2
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from guidebot.app import create_app
from guidebot.clock import FakeClock
from guidebot.contacts.jobs import nightly_directory_sync, nightly_reconcile, poll_transfers
from guidebot.contacts.models import Customer, Relation, RelationEvent, StoreMembership
from guidebot.web.keys import CLOCK, INBOX_WORKER, SESSIONS, WECOM
from guidebot.web.startup import CONTACTS_STARTUP
from guidebot.wecom.simulator import SIMULATOR_STATE, SimulatorConfig, create_simulator_app
from tests.support import TEST_IDENTITY, make_settings

START = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}


def contact_xml(change_type: str, userid: str, ext: str, at: datetime, **extra: str) -> str:
    """A change_external_contact plaintext, as WeCom writes it."""
    fields = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in extra.items())
    return (
        f"<xml><ToUserName><![CDATA[{TEST_IDENTITY.corp_id}]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{int(at.timestamp())}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        f"<ChangeType><![CDATA[{change_type}]]></ChangeType>"
        f"<UserID><![CDATA[{userid}]]></UserID>"
        f"<ExternalUserID><![CDATA[{ext}]]></ExternalUserID>"
        f"{fields}</xml>"
    )


def change_contact_xml(change_type: str, at: datetime, **fields: str | int) -> str:
    """A change_contact plaintext; ChangeType is plain text there, as WeCom sends it."""
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return (
        f"<xml><ToUserName><![CDATA[{TEST_IDENTITY.corp_id}]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{int(at.timestamp())}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_contact]]></Event>"
        f"<ChangeType>{change_type}</ChangeType>{body}</xml>"
    )


class Harness:
    def __init__(self, sim_client: Any, client: Any, clock: FakeClock) -> None:
        self.sim = sim_client
        self.client = client
        self.clock = clock

    @property
    def app(self):
        return self.client.server.app

    @property
    def sim_state(self):
        return self.sim.server.app[SIMULATOR_STATE]

    @property
    def sessions(self):
        return self.app[SESSIONS]

    def advance(self, seconds: float) -> datetime:
        self.clock.advance(timedelta(seconds=seconds))
        return self.clock.now()

    # -- the simulated WeCom -------------------------------------------------------------

    async def control(self, path: str, payload: Any = None, *, status: int = 200) -> dict:
        response = await self.sim.post(f"/_sim/{path}", json=payload or {})
        data = await response.json()
        assert response.status == status, data
        return data

    async def act(self, path: str, payload: dict[str, Any], *, drain: bool = True) -> dict:
        """Make a customer or guide act in WeCom; then let guidebot handle the callback."""
        answer = await self.control(path, payload)
        if payload.get("deliver", True):
            assert answer.get("delivered"), answer
        if drain:
            await self.drain()
        return answer

    async def add(self, userid: str, ext: str, **extra: Any) -> dict:
        return await self.act("contact/add", {"userid": userid, "external_userid": ext, **extra})

    async def deliver(self, xml: str, *, drain: bool = True) -> dict:
        answer = await self.control("callbacks", {"xml": xml})
        assert answer["delivered"], answer
        if drain:
            await self.drain()
        return answer

    async def calls(self, api: str) -> list[dict]:
        response = await self.sim.get("/_sim/calls", params={"api": api})
        return (await response.json())["calls"]

    # -- guidebot ------------------------------------------------------------------------

    async def drain(self) -> int:
        return await self.app[INBOX_WORKER].drain()

    async def api(self, method: str, path: str, *, auth: bool = True, **kwargs: Any):
        response = await self.client.request(
            method, f"/api/v1{path}", headers=ADMIN if auth else {}, **kwargs
        )
        return response.status, await response.json()

    async def sync(self):
        return await nightly_directory_sync(self.sessions, self.app[WECOM], self.app[CLOCK])

    async def reconcile(self):
        return await nightly_reconcile(self.sessions, self.app[WECOM], self.app[CLOCK])

    async def poll(self):
        return await poll_transfers(self.sessions, self.app[WECOM], self.app[CLOCK])

    async def relation(self, userid: str, ext: str) -> Relation | None:
        async with self.sessions() as session:
            return await session.scalar(
                select(Relation).where(
                    Relation.guide_userid == userid, Relation.external_userid == ext
                )
            )

    async def relations(self) -> list[Relation]:
        async with self.sessions() as session:
            return list(await session.scalars(select(Relation).order_by(Relation.id)))

    async def customer(self, ext: str) -> Customer | None:
        async with self.sessions() as session:
            return await session.get(Customer, ext)

    async def log(self, ext: str | None = None) -> list[RelationEvent]:
        query = select(RelationEvent).order_by(RelationEvent.occurred_at, RelationEvent.id)
        if ext is not None:
            query = query.where(RelationEvent.external_userid == ext)
        async with self.sessions() as session:
            return list(await session.scalars(query))

    async def memberships(self, userid: str) -> list[StoreMembership]:
        async with self.sessions() as session:
            return list(
                await session.scalars(
                    select(StoreMembership)
                    .where(StoreMembership.guide_userid == userid)
                    .order_by(StoreMembership.valid_from, StoreMembership.id)
                )
            )


async def seed_corp(sim: Any) -> None:
    async def post(path: str, payload: dict) -> None:
        response = await sim.post(f"/_sim/{path}", json=payload)
        assert response.status == 200, await response.text()

    await post("departments", {"id": 10, "name": "华东", "parentid": 1})
    await post("departments", {"id": 11, "name": "张江店", "parentid": 10})
    await post("departments", {"id": 12, "name": "徐汇店", "parentid": 10})
    for userid, name, dept in (("g1", "王芳", 11), ("g2", "李娜", 12), ("g3", "张伟", 11)):
        await post("users", {"userid": userid, "name": name, "department": [dept]})
    for ext, name, gender in (("wmc1", "陈女士", 2), ("wmc2", "刘先生", 1), ("wmc3", "赵女士", 2)):
        await post(
            "customers",
            {"external_userid": ext, "name": name, "gender": gender, "unionid": f"u-{ext}"},
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def h(aiohttp_client, database_url, clock) -> Harness:
    sim = await aiohttp_client(
        create_simulator_app(SimulatorConfig(identity=TEST_IDENTITY, clock=clock.time))
    )
    await seed_corp(sim)
    settings = make_settings(database_url, wecom_api_base=str(sim.make_url("/")))
    client = await aiohttp_client(create_app(settings, clock=clock, run_workers=False))
    response = await sim.post(
        "/_sim/config", json={"callback_url": str(client.make_url("/wecom/callback"))}
    )
    assert response.status == 200
    await client.server.app[CONTACTS_STARTUP]  # the start-up directory sync
    return Harness(sim, client, clock)
