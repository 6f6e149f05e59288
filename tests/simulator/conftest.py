"""Fixtures for the simulator's tests: a fake clock, the simulator, and a callback receiver.

The receiver is the edge: a tiny aiohttp app that decrypts with wechatpy, independently of
guidebot's crypto, and answers as each test scripts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp import web
from wechatpy.enterprise.crypto import WeChatCrypto

from guidebot.clock import FakeClock
from guidebot.config import WeComIdentity
from guidebot.wecom.simulator import SIMULATOR_STATE, SimulatorConfig, create_simulator_app

IDENTITY = WeComIdentity(
    corp_id="wwsimulatortest01",
    agent_id=1000002,
    secret="simulator-test-secret",
    token="QDG6eK",
    aes_key="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
)
CN = timezone(timedelta(hours=8))


def cn_time(*args: int) -> float:
    return datetime(*args, tzinfo=CN).timestamp()


class Sim:
    """The simulator under test, reached over HTTP like any WeCom client would."""

    def __init__(self, client: Any, clock: FakeClock) -> None:
        self.client = client
        self.clock = clock
        self._token: str | None = None

    @property
    def state(self):
        return self.client.server.app[SIMULATOR_STATE]

    async def control(
        self, path: str, payload: Any = None, *, method: str = "POST", status: int = 200
    ) -> dict[str, Any]:
        kwargs = {} if payload is None else {"json": payload}
        response = await self.client.request(method, f"/_sim/{path}", **kwargs)
        data = await response.json()
        assert response.status == status, data
        return data

    async def token(self) -> str:
        if self._token is None:
            answer = await self.api(
                "gettoken", token=None, corpid=IDENTITY.corp_id, corpsecret=IDENTITY.secret
            )
            assert answer["errcode"] == 0, answer
            self._token = answer["access_token"]
        return self._token

    async def api(
        self, path: str, body: Any = None, *, token: str | bool | None = True, **query: Any
    ) -> dict[str, Any]:
        """GET when there is no body, POST otherwise.

        token=True uses a cached token and refreshes it once on 42001, as a real client would
        after the tests move the clock; tests of token rules pass tokens explicitly.
        """
        if token is True:
            query["access_token"] = await self.token()
        elif token:
            query["access_token"] = token
        answer = await self._call(path, body, query)
        if token is True and answer.get("errcode") == 42001:
            self._token = None
            query["access_token"] = await self.token()
            answer = await self._call(path, body, query)
        return answer

    async def _call(self, path: str, body: Any, query: dict[str, Any]) -> dict[str, Any]:
        if body is None:
            response = await self.client.get(f"/cgi-bin/{path}", params=query)
        else:
            response = await self.client.post(f"/cgi-bin/{path}", params=query, json=body)
        assert response.status == 200
        return await response.json()

    async def seed_guides(self, *userids: str) -> None:
        await self.control("departments", {"id": 2, "name": "Store A", "parentid": 1})
        for userid in userids:
            await self.control(
                "users", {"userid": userid, "name": userid.title(), "department": [2]}
            )

    async def add(self, userid: str, ext: str, **extra: Any) -> dict[str, Any]:
        return await self.control(
            "contact/add", {"userid": userid, "external_userid": ext, **extra}
        )


class Receiver:
    """Decrypts every callback with wechatpy; `script` says how to answer each one in turn.

    Script items: an int (HTTP status, empty body), ("sleep", seconds), or ("reply", fn) where
    fn(plaintext, crypto) returns the response body.
    """

    def __init__(self) -> None:
        self.crypto = WeChatCrypto(IDENTITY.token, IDENTITY.aes_key, IDENTITY.corp_id)
        self.script: list[Any] = []
        self.posts: list[dict[str, Any]] = []
        self.url = ""

    @property
    def plaintexts(self) -> list[str]:
        return [p["plaintext"] for p in self.posts]

    async def handle_post(self, request: web.Request) -> web.Response:
        body = await request.text()
        q = request.query
        plaintext = self.crypto.decrypt_message(
            body, q["msg_signature"], q["timestamp"], q["nonce"]
        )
        self.posts.append({"query": dict(q), "body": body, "plaintext": plaintext})
        action = self.script.pop(0) if self.script else 200
        if isinstance(action, int):
            return web.Response(status=action)
        kind, arg = action
        if kind == "sleep":
            await asyncio.sleep(arg)
            return web.Response()
        return web.Response(text=arg(plaintext, self.crypto), content_type="text/xml")

    async def handle_get(self, request: web.Request) -> web.Response:
        q = request.query
        echo = self.crypto.check_signature(
            q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"]
        )
        action = self.script.pop(0) if self.script else None
        return web.Response(text=action(echo) if action else echo)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 10, 12, 0, tzinfo=CN))


@pytest.fixture
async def receiver(aiohttp_server) -> Receiver:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/wecom/callback", receiver.handle_post)
    app.router.add_get("/wecom/callback", receiver.handle_get)
    server = await aiohttp_server(app)
    receiver.url = str(server.make_url("/wecom/callback"))
    return receiver


@pytest.fixture
def make_sim(aiohttp_client, clock) -> Callable[..., Any]:
    async def make(**overrides: Any) -> Sim:
        config = SimulatorConfig(identity=IDENTITY, clock=clock.time, **overrides)
        return Sim(await aiohttp_client(create_simulator_app(config)), clock)

    return make


@pytest.fixture
async def sim(make_sim, receiver) -> Sim:
    """A simulator delivering to the receiver, with store 2 and guides alice and bob."""
    sim = await make_sim(callback_url=receiver.url, callback_timeout=1.0)
    await sim.seed_guides("alice", "bob")
    return sim
