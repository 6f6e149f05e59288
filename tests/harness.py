"""The one harness: guidebot and the simulated WeCom, talking over real HTTP on one fake clock.

The simulator delivers every callback encrypted to guidebot's /wecom/callback; guidebot's
handlers call the simulator's /cgi-bin API. One fake clock (guidebot.clock.FakeClock) drives
both, and guidebot's waits (the WeCom client's backoff and pacing, a busy WeCom's welcome
backoff) sleep on it: they move it instead of waiting real time.
Workers do not run on their own: a test drains the inbox when it wants the events handled.

The corp every harness starts with (synced into guidebot at start-up):

    1 corp
    └── 10 华东 (region)
        ├── 11 张江店 (store): g1, g3
        └── 12 徐汇店 (store): g2

with customers wmc1..wmc3 (more when a suite asks). Each suite's conftest picks its start time,
its playbooks and its domain helpers (a subclass of `Harness`); `start_harness` builds them all.
"""

from __future__ import annotations

import contextlib
import shutil
import textwrap
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient, TestServer

from guidebot.app import create_app
from guidebot.clock import FakeClock
from guidebot.web.keys import INBOX_WORKER, SESSIONS, SETTINGS, SOP
from guidebot.web.startup import CONTACTS_STARTUP
from guidebot.wecom.simulator import SIMULATOR_STATE, SimulatorConfig, create_simulator_app
from guidebot.wecom.simulator.records import Customer, Member
from tests.support import TEST_IDENTITY, make_settings

START = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
REPO = Path(__file__).resolve().parents[1]

GUIDES = (("g1", "王芳", 11), ("g2", "李娜", 12), ("g3", "张伟", 11))
CUSTOMERS = (("wmc1", "陈女士", 2), ("wmc2", "刘先生", 1), ("wmc3", "赵女士", 2))


# -- callbacks as WeCom writes them ------------------------------------------------------------


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


# -- playbooks ---------------------------------------------------------------------------------


def deploy_dir(root: Path) -> Path:
    """An empty sop/ with the repository's message templates beside it, as a deployment has."""
    (root / "sop").mkdir(parents=True)
    shutil.copytree(REPO / "templates" / "messages", root / "templates" / "messages")
    return root / "sop"


def write_playbook(sop_dir: Path, text: str, name: str | None = None) -> Path:
    """Write a playbook's YAML (dedented) into sop_dir, named after its `playbook:` unless told."""
    text = textwrap.dedent(text).strip() + "\n"
    if name is None:
        name = next(
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if line.startswith("playbook:")
        )
    path = sop_dir / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# -- the harness -------------------------------------------------------------------------------


class Harness:
    """The app and the simulator under one clock, and what every suite does with them."""

    # After draining, wait for the work the worker starts after a commit (the welcome fast
    # path). The contacts suites look at the moment right after the commit instead.
    settle_after_drain = True

    def __init__(self, sim: Any, client: Any, clock: FakeClock, sop_dir: Path | None = None):
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
    def settings(self):
        return self.app[SETTINGS]

    # -- time ----------------------------------------------------------------------------

    def advance(self, delta: timedelta | float) -> datetime:
        """Move the clock on (a timedelta, or seconds); the new instant."""
        self.clock.advance(delta)
        return self.clock.now()

    def set_time(self, instant: datetime) -> datetime:
        self.clock.set(instant)
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

    async def fault(self, api: str, errcode: int, times: int = 1) -> None:
        await self.control("faults", {"api": api, "errcode": errcode, "times": times})

    async def calls(self, api: str) -> list[dict]:
        response = await self.sim.get("/_sim/calls", params={"api": api})
        return (await response.json())["calls"]

    async def welcomes(self) -> list[dict]:
        response = await self.sim.get("/_sim/welcomes")
        return (await response.json())["welcomes"]

    async def app_messages(self, userid: str) -> list[dict]:
        response = await self.sim.get("/_sim/app_messages", params={"userid": userid})
        return (await response.json())["messages"]

    # -- guidebot ------------------------------------------------------------------------

    async def drain(self) -> int:
        worker = self.app[INBOX_WORKER]
        handled = await worker.drain()
        if self.settle_after_drain:
            await worker.settle()
        return handled

    async def api(self, method: str, path: str, *, auth: bool = True, **kwargs: Any):
        response = await self.client.request(
            method, f"/api/v1{path}", headers=ADMIN if auth else {}, **kwargs
        )
        return response.status, await response.json()


H = TypeVar("H", bound=Harness)


async def seed_corp(sim: Any, customers: Iterable[dict[str, Any]] = ()) -> None:
    """The corp above in the simulator, and `customers` (as POST /_sim/customers takes them)
    besides wmc1..wmc3.

    They go into the simulator's state as its control API would put them, with the checks it
    makes: a request each was a tenth of a harness's start, more with a suite's customers."""
    state = sim.server.app[SIMULATOR_STATE]
    state.upsert_department(10, "华东", 1)
    state.upsert_department(11, "张江店", 10)
    state.upsert_department(12, "徐汇店", 10)
    for userid, name, dept in GUIDES:
        state.upsert_member(Member(userid=userid, name=name, department=[dept]))
    corp = [
        {"external_userid": ext, "name": name, "gender": gender, "unionid": f"u-{ext}"}
        for ext, name, gender in CUSTOMERS
    ]
    for fields in [*corp, *customers]:
        customer = Customer(**{"name": fields["external_userid"], **fields})
        assert customer.type in (1, 2) and customer.gender in (0, 1, 2), fields
        state.upsert_customer(customer)


@contextlib.asynccontextmanager
async def served() -> AsyncIterator[Any]:
    """What pytest-aiohttp's `aiohttp_client` gives a test, for a fixture of a wider scope: a
    factory of test clients, each serving its app, all closed at the end."""
    clients: list[TestClient] = []

    async def serve(app: Any, *, server_kwargs: dict[str, Any] | None = None) -> TestClient:
        client = TestClient(TestServer(app, **(server_kwargs or {})))
        await client.start_server()
        clients.append(client)
        return client

    try:
        yield serve
    finally:
        while clients:
            await clients.pop().close()


def reload_playbooks(h: Harness) -> list:
    """Load the playbooks in the harness's sop/ with the real loader; none may be broken."""
    return _none_broken(h.app[SOP].registry.reload())


def started_playbooks(h: Harness) -> list:
    """The playbooks the app loaded as it started (those written before the harness); none may
    be broken. Loading them again would cost a third of a harness's start."""
    return _none_broken(h.app[SOP].registry.loaded)


def _none_broken(loaded: list) -> list:
    broken = [str(e) for item in loaded for e in item.errors]
    assert not broken, broken
    return loaded


async def start_harness(
    aiohttp_client: Any,
    database_url: str,
    clock: FakeClock,
    *,
    kind: type[H] = Harness,
    sop_dir: Path | None = None,
    customers: Iterable[dict[str, Any]] = (),
    simulator: dict[str, Any] | None = None,
    server_kwargs: dict[str, Any] | None = None,
    **settings: Any,
) -> H:
    """The simulator seeded with the corp, guidebot pointed at it (and it at guidebot's
    callback), the start-up directory sync done. `sop_dir` None runs the shipped playbooks."""
    sim = await aiohttp_client(
        create_simulator_app(
            SimulatorConfig(identity=TEST_IDENTITY, clock=clock.time, **(simulator or {}))
        )
    )
    await seed_corp(sim, customers)
    options: dict[str, Any] = {"wecom_api_base": str(sim.make_url("/")).rstrip("/")}
    if sop_dir is not None:
        options["sop_dir"] = str(sop_dir)
    app_settings = make_settings(database_url, **options, **settings)
    app = create_app(app_settings, clock=clock, run_workers=False)
    client = await aiohttp_client(app, server_kwargs=server_kwargs or {})
    # As POST /_sim/config sets it, without the harness's only request before the test's own.
    sim.server.app[SIMULATOR_STATE].update_config(
        callback_url=str(client.make_url("/wecom/callback"))
    )
    await client.server.app[CONTACTS_STARTUP]  # the start-up directory sync
    return kind(sim, client, clock, sop_dir)
