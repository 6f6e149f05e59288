"""The sidebar's WeCom OAuth against a WeCom that is not our simulator: only a state guidebot
signed, recently, and that this browser holds, gets as far as WeCom's auth/getuserinfo, and
each client address gets a limited number of exchanges, counted on every instance."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from guidebot.app import create_app
from guidebot.clock import FakeClock
from guidebot.contacts.models import Guide
from guidebot.web.keys import SESSIONS
from guidebot.web.sidebar.signin import OAUTH_PER_ADDRESS, mint_oauth_state, oauth_state_valid
from tests.content.harness import START
from tests.support import make_settings


class FakeWeCom:
    """WeCom's gettoken and auth/getuserinfo (code "good-<userid>" names the member); every
    other path 404s, so guidebot knows this is no simulator."""

    def __init__(self) -> None:
        self.codes: list[str] = []
        self.app = web.Application()
        self.app.router.add_get("/cgi-bin/gettoken", self.gettoken)
        self.app.router.add_get("/cgi-bin/auth/getuserinfo", self.getuserinfo)

    async def gettoken(self, request: web.Request) -> web.Response:
        return web.json_response({"errcode": 0, "access_token": "tok", "expires_in": 7200})

    async def getuserinfo(self, request: web.Request) -> web.Response:
        code = request.query.get("code", "")
        self.codes.append(code)
        if code.startswith("good-"):
            return web.json_response({"errcode": 0, "userid": code.removeprefix("good-")})
        return web.json_response({"errcode": 40029, "errmsg": "invalid code"})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def wecom() -> FakeWeCom:
    return FakeWeCom()


@pytest.fixture
async def settings(aiohttp_client, wecom, database_url, tmp_path):
    server = await aiohttp_client(wecom.app)
    return make_settings(
        database_url,
        wecom_api_base=str(server.make_url("/")).rstrip("/"),
        public_url="https://guide.example.com",
        sop_dir=str(tmp_path),
        trusted_proxies=("127.0.0.0/8",),  # the test client is the balancer
    )


@pytest.fixture
async def client(aiohttp_client, settings, clock):
    client = await aiohttp_client(create_app(settings, clock=clock, run_workers=False))
    async with client.server.app[SESSIONS]() as session, session.begin():
        session.add(Guide(userid="g1", name="李娜", updated_at=clock.now()))
    return client


async def _state(client, via: str = "198.51.100.7") -> str:
    """What a browser gets when it opens the sidebar without a session: WeCom's sign-in."""
    response = await client.get(
        "/sidebar?customer=wm1", headers={"X-Forwarded-For": via}, allow_redirects=False
    )
    assert response.status == 302
    [state] = parse_qs(urlsplit(response.headers["Location"]).query)["state"]
    assert response.cookies["gb_oauth"].value == state
    return state


async def _back(client, state: str, code: str = "x", *, cookie=None, via="198.51.100.7"):
    """WeCom sends the browser back with a code and the state."""
    client.session.cookie_jar.clear()
    return await client.get(
        "/sidebar/oauth",
        params={"code": code, "state": state, "next": "/sidebar?customer=wm1"},
        headers={
            "Cookie": f"gb_oauth={state if cookie is None else cookie}",
            "X-Forwarded-For": via,
        },
        allow_redirects=False,
    )


async def test_a_signed_state_signs_a_guide_in(client, wecom):
    state = await _state(client)
    assert len(state) <= 128 and state.isascii() and state.isalnum()  # what WeCom allows
    response = await _back(client, state, "good-g1")
    assert response.status == 302 and response.headers["Location"] == "/sidebar?customer=wm1"
    assert "gb_guide" in response.cookies
    assert wecom.codes == ["good-g1"]


async def test_a_state_guidebot_did_not_sign_never_reaches_wecom(client, settings, clock, wecom):
    real = await _state(client)
    forged = [
        "y",  # any value the caller set in both places, as before
        real[:-1] + ("0" if real[-1] != "0" else "1"),  # a signature that does not match
        mint_oauth_state("another secret key " * 2, clock.now()),
    ]
    for state in forged:
        assert (await _back(client, state)).status == 403, state
    # A real state with no cookie, or another browser's cookie, is refused as well.
    assert (await _back(client, real, cookie="")).status == 403
    assert (await _back(client, real, cookie=await _state(client))).status == 403
    assert wecom.codes == []


async def test_a_state_lasts_ten_minutes(client, settings, clock, wecom):
    state = await _state(client)
    clock.advance(timedelta(minutes=10, seconds=1))
    assert not oauth_state_valid(settings.secret_key, state, clock.now())
    assert (await _back(client, state)).status == 403
    assert wecom.codes == []
    fresh = await _state(client)
    assert (await _back(client, fresh)).status == 502  # WeCom refused the made-up code
    assert wecom.codes == ["x"]


async def test_wecom_exchanges_are_limited_per_client_address_on_every_instance(
    client, settings, clock, wecom, aiohttp_client
):
    other = await aiohttp_client(create_app(settings, clock=clock, run_workers=False))
    for n in range(OAUTH_PER_ADDRESS):
        instance = other if n % 2 else client
        response = await _back(instance, await _state(instance), f"bad{n}")
        assert response.status == 502, await response.text()
    assert len(wecom.codes) == OAUTH_PER_ADDRESS
    for instance in (client, other):
        refused = await _back(instance, await _state(instance), "good-g1")
        assert refused.status == 429
        assert 0 < int(refused.headers["Retry-After"]) <= 15 * 60
        assert "登录过于频繁" in await refused.text()
    assert len(wecom.codes) == OAUTH_PER_ADDRESS  # WeCom was not asked again
    # Another shop's office behind the same balancer signs in as usual.
    other_office = "198.51.100.8"
    response = await _back(client, await _state(client, other_office), "good-g1", via=other_office)
    assert response.status == 302
    # The window passes: the first address may try again.
    clock.advance(timedelta(minutes=15, seconds=1))
    assert (await _back(client, await _state(client), "good-g1")).status == 302


async def test_exchanges_that_sign_a_guide_in_do_not_count(client, wecom):
    for _ in range(OAUTH_PER_ADDRESS + 5):  # a store's guides, all behind one address
        assert (await _back(client, await _state(client), "good-g1")).status == 302
    assert (await _back(client, await _state(client), "bad")).status == 502
