"""WeComClient against the simulated WeCom over real HTTP, on a fake clock.

No mocks: every call goes through aiohttp to guidebot.wecom.simulator, and the assertions read
what the simulator saw (/_sim/calls). The fake clock drives both the simulator's rules (token
expiry, welcome-code window) and the client's (token refresh, 45009 cooldown, backoff, pacing:
the client sleeps on it).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from guidebot.clock import FakeClock
from guidebot.wecom import client as client_module
from guidebot.wecom.client import (
    BACKGROUND_APIS,
    UNSAFE_APIS,
    URGENT_APIS,
    AppMessageResult,
    ContactWay,
    Media,
    MsgTemplateResult,
    Page,
    Priority,
    WeComClient,
    WeComDeadlineExceeded,
    WeComError,
    WeComTransportError,
    WeComUncertain,
    default_priority,
)
from guidebot.wecom.credentials import Credential, MemoryCredentialStore
from guidebot.wecom.ratelimit import TokenBucket
from guidebot.wecom.simulator import SimulatorConfig, create_simulator_app
from guidebot.wecom.simulator.api import contacts as simulator_contacts
from tests.support import TEST_IDENTITY

CORP_ID = TEST_IDENTITY.corp_id
AGENT_ID = TEST_IDENTITY.agent_id
TOKEN_NAME = f"access_token:{CORP_ID}:{AGENT_ID}"
START_AT = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)
START = START_AT.timestamp()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


class Sim:
    """The simulated WeCom's control API."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def control(self, path: str, payload: Any = None, method: str = "POST") -> Any:
        async with self.session.request(method, f"{self.base}/_sim/{path}", json=payload) as r:
            data = await r.json()
            assert r.status == 200, data
            return data

    async def calls(self, api: str | None = None) -> list[dict[str, Any]]:
        async with self.session.get(
            f"{self.base}/_sim/calls", params={"api": api} if api else {}
        ) as r:
            return (await r.json())["calls"]

    async def count(self, api: str) -> int:
        return len(await self.calls(api))

    async def fault(self, api: str, times: int = 1, **fault: Any) -> None:
        await self.control("faults", {"api": api, "times": times, **fault})

    async def seed_guides(self, *userids: str) -> None:
        await self.control("departments", {"id": 2, "name": "Store A", "parentid": 1})
        for userid in userids:
            await self.control("users", {"userid": userid, "name": userid, "department": [2]})

    async def add_contact(self, userid: str, ext: str, **extra: Any) -> dict[str, Any]:
        body = {"userid": userid, "external_userid": ext, "deliver": False, **extra}
        return await self.control("contact/add", body)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START_AT)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_sim(aiohttp_server, session, clock) -> Callable[..., Any]:
    async def make(**overrides: Any) -> Sim:
        config = SimulatorConfig(identity=TEST_IDENTITY, clock=clock.time, **overrides)
        server = await aiohttp_server(create_simulator_app(config))
        return Sim(str(server.make_url("")).rstrip("/"), session)

    return make


@pytest.fixture
async def sim(make_sim) -> Sim:
    sim = await make_sim()
    await sim.seed_guides("alice", "bob")
    return sim


@pytest.fixture
def store() -> MemoryCredentialStore:
    return MemoryCredentialStore()


@pytest.fixture
def make_client(session, sim, clock, store) -> Callable[..., WeComClient]:
    def make(**overrides: Any) -> WeComClient:
        options: dict[str, Any] = dict(
            corp_id=CORP_ID,
            secret=TEST_IDENTITY.secret,
            agent_id=AGENT_ID,
            api_base=sim.base,
            credentials=store,
            clock=clock,
        )
        options.update(overrides)
        return WeComClient(session, **options)

    return make


@pytest.fixture
def client(make_client) -> WeComClient:
    return make_client()


def answers(calls: list[dict[str, Any]]) -> list[int | None]:
    return [(c["answer"] or {}).get("errcode") for c in calls]


# ---- access token ------------------------------------------------------------------------


async def test_token_is_fetched_once_and_shared_by_two_clients(sim, make_client, store):
    first, second = make_client(), make_client()
    for _ in range(5):
        assert [d["id"] for d in await first.department_list()] == [1, 2]
        assert (await second.user_get("alice"))["userid"] == "alice"

    assert await sim.count("gettoken") == 1
    stored = await store.get(TOKEN_NAME)
    assert stored is not None
    calls = await sim.calls()
    assert len(calls) == 11
    assert all(c["query"].get("access_token") == "***" for c in calls[1:])  # in the query


async def test_token_refreshed_300s_before_expiry_and_after_the_ttl(sim, client, clock):
    await client.department_list()
    clock.advance(7200 - 301)
    await client.department_list()
    assert await sim.count("gettoken") == 1

    clock.advance(2)  # now 299 s before WeCom's expiry: refresh before it bites
    await client.department_list()
    assert await sim.count("gettoken") == 2

    clock.advance(7201)  # past the whole ttl
    await client.department_list()
    assert await sim.count("gettoken") == 3
    assert 42001 not in answers(await sim.calls())  # never sent an expired token


async def test_stored_credential_carries_the_refresh_instant(sim, client, store, clock):
    await client.department_list()
    stored = await store.get(TOKEN_NAME)
    assert stored is not None
    assert stored.expires_at == datetime.fromtimestamp(START + 7200 - 300, UTC)


@pytest.mark.parametrize("errcode", [40014, 42001])
async def test_invalid_token_is_discarded_refreshed_once_and_the_call_retried(
    sim, client, store, errcode
):
    await client.department_list()
    old = await store.get(TOKEN_NAME)
    await sim.fault("user/get", errcode=errcode)

    assert (await client.user_get("alice"))["userid"] == "alice"

    assert await sim.count("gettoken") == 2
    assert answers(await sim.calls("user/get")) == [errcode, 0]
    new = await store.get(TOKEN_NAME)
    assert new is not None and old is not None and new.value != old.value


async def test_an_invalid_token_twice_in_a_row_is_raised_after_one_refresh(sim, client):
    await sim.fault("user/get", errcode=40014, times=5)
    with pytest.raises(WeComError) as caught:
        await client.user_get("alice")
    assert caught.value.errcode == 40014
    assert await sim.count("gettoken") == 2
    assert await sim.count("user/get") == 2


async def test_revoked_tokens_are_refreshed_once_for_concurrent_callers(sim, make_client):
    first, second = make_client(), make_client()
    await first.department_list()
    await second.department_list()
    await sim.control("tokens/revoke")

    results = await asyncio.gather(
        *(c.user_get("alice") for c in (first, second) for _ in range(10))
    )

    assert all(r["userid"] == "alice" for r in results)
    assert await sim.count("gettoken") == 2  # the first fetch, then exactly one refresh


async def test_wrong_secret_raises_40001_at_once_and_does_not_hammer_gettoken(
    sim, make_client, clock
):
    client = make_client(secret="not-the-secret")
    with pytest.raises(WeComError) as caught:
        await client.user_get("alice")
    assert (caught.value.api, caught.value.errcode) == ("gettoken", 40001)
    assert not isinstance(caught.value, WeComTransportError)
    assert clock.slept == []  # no backoff loop

    # Repeated and concurrent callers get the same error without calling gettoken again.
    for outcome in await asyncio.gather(
        *(client.department_list() for _ in range(10)), return_exceptions=True
    ):
        assert isinstance(outcome, WeComError) and outcome.errcode == 40001
    assert await sim.count("gettoken") == 1
    assert await sim.count("department/list") == 0

    clock.advance(61)  # the remembered failure lapses: one more honest try
    with pytest.raises(WeComError):
        await client.user_get("alice")
    assert await sim.count("gettoken") == 2


async def test_wrong_corp_id_raises_40013(sim, make_client):
    with pytest.raises(WeComError) as caught:
        await make_client(corp_id="wwsomeoneelse").department_list()
    assert caught.value.errcode == 40013
    assert await sim.count("gettoken") == 1


async def test_concurrent_callers_on_two_clients_fetch_the_token_exactly_once(sim, make_client):
    first, second = make_client(), make_client()
    calls = [c.user_get(u) for c in (first, second) for u in ("alice", "bob") * 5]

    results = await asyncio.gather(*calls)

    assert sorted({r["userid"] for r in results}) == ["alice", "bob"]
    assert await sim.count("gettoken") == 1
    assert await sim.count("user/get") == 20


async def test_lease_loser_waits_for_the_winners_token(sim, make_client, store, clock):
    # Another instance holds the refresh lease; it publishes its token a little later.
    elsewhere = make_client(credentials=MemoryCredentialStore())
    token = await elsewhere.get_access_token()
    now = datetime.fromtimestamp(clock.time(), UTC)
    assert await store.try_lease(TOKEN_NAME, "other-instance", now, now + timedelta(seconds=60))

    client = make_client()
    call = asyncio.create_task(client.department_list())
    await asyncio.sleep(0.05)
    assert not call.done()  # polling, not fetching
    await store.put(TOKEN_NAME, Credential(token, now + timedelta(seconds=3600)), "other-instance")

    assert [d["id"] for d in await call] == [1, 2]
    assert await sim.count("gettoken") == 1  # only the other instance's fetch


async def test_lease_loser_fetches_itself_when_the_winners_lease_lapses(
    sim, make_client, store, clock
):
    now = datetime.fromtimestamp(clock.time(), UTC)
    assert await store.try_lease(TOKEN_NAME, "crashed-instance", now, now + timedelta(seconds=30))

    await make_client().department_list()

    assert await sim.count("gettoken") == 1
    assert clock.time() - START >= 30  # it waited the lease out on the injected clock
    assert clock.time() - START < 40


async def test_lease_loser_gives_up_when_a_lease_never_lapses(sim, make_client, store, clock):
    # A store whose lease outlives any honest refresh (e.g. a clock far ahead elsewhere).
    now = datetime.fromtimestamp(clock.time(), UTC)
    assert await store.try_lease(TOKEN_NAME, "skewed", now, now + timedelta(days=1))
    client = make_client(timeout=1.0, max_retries=0)  # lease 6 s: give up after 12 s

    with pytest.raises(WeComTransportError) as caught:
        await client.department_list()

    assert caught.value.api == "gettoken" and "refresh lease" in caught.value.errmsg
    assert 12 <= clock.time() - START < 14
    assert await sim.count("gettoken") == 0


# ---- retries -----------------------------------------------------------------------------


async def test_busy_twice_then_success_on_the_third_try(sim, client, clock):
    await sim.fault("user/get", errcode=-1, times=2)
    assert (await client.user_get("alice"))["userid"] == "alice"
    assert answers(await sim.calls("user/get")) == [-1, -1, 0]
    assert len(clock.slept) == 2
    assert 0.25 <= clock.slept[0] <= 0.5 and 0.5 <= clock.slept[1] <= 1.0  # jittered, doubling


async def test_busy_beyond_max_retries_raises_wecom_busy(sim, make_client):
    client = make_client(max_retries=2)
    await sim.fault("user/get", errcode=-1, times=10)
    with pytest.raises(WeComError) as caught:
        await client.user_get("alice")
    assert caught.value.errcode == -1
    assert not isinstance(caught.value, WeComTransportError | WeComUncertain)
    assert await sim.count("user/get") == 3


async def test_45033_is_retried(sim, client):
    await sim.fault("externalcontact/get_follow_user_list", errcode=45033)
    assert await client.get_follow_user_list() == ["alice", "bob"]
    assert await sim.count("externalcontact/get_follow_user_list") == 2


async def test_http_500_is_retried_for_safe_calls(sim, client):
    await sim.fault("department/list", http_status=500, times=2)
    assert len(await client.department_list()) == 2
    assert await sim.count("department/list") == 3


async def test_http_5xx_that_persists_raises_a_transport_error(sim, make_client):
    client = make_client(max_retries=1)
    await sim.fault("department/list", http_status=502, times=5)
    with pytest.raises(WeComTransportError) as caught:
        await client.department_list()
    assert caught.value.errcode == -1
    assert "HTTP 502" in caught.value.errmsg and "2 attempts" in caught.value.errmsg
    assert await sim.count("department/list") == 2


async def test_timeout_is_retried_for_a_safe_call(sim, make_client):
    client = make_client(timeout=0.2)
    await client.get_access_token()
    await sim.fault("user/get", timeout=True)
    assert (await client.user_get("alice"))["userid"] == "alice"
    assert await sim.count("user/get") == 2


async def test_timeout_on_send_welcome_msg_is_uncertain_and_not_retried(sim, make_client):
    client = make_client(timeout=0.2)
    await client.get_access_token()
    code = (await sim.add_contact("alice", "wm_anna", welcome_code=True))["welcome_code"]
    await sim.fault("externalcontact/send_welcome_msg", timeout=True)

    with pytest.raises(WeComUncertain) as caught:
        await client.send_welcome_msg(code, "欢迎光临")

    assert caught.value.errcode == -1
    assert "may have reached WeCom" in caught.value.errmsg
    assert not isinstance(caught.value, WeComTransportError)
    assert await sim.count("externalcontact/send_welcome_msg") == 1


@pytest.mark.parametrize("status", [500, 502])
async def test_5xx_on_an_unsafe_call_is_uncertain(sim, client, status):
    await sim.add_contact("alice", "wm_anna")
    await sim.fault("externalcontact/add_msg_template", http_status=status)
    with pytest.raises(WeComUncertain):
        await client.add_msg_template(external_userids=["wm_anna"], sender="alice", text="hi")
    assert await sim.count("externalcontact/add_msg_template") == 1


@pytest.mark.parametrize("errcode", [-1, 45033])
async def test_unsafe_calls_retry_when_wecom_says_busy(sim, client, errcode):
    code = (await sim.add_contact("alice", "wm_anna", welcome_code=True))["welcome_code"]
    await sim.fault("externalcontact/send_welcome_msg", errcode=errcode)
    await client.send_welcome_msg(code, "欢迎")
    assert answers(await sim.calls("externalcontact/send_welcome_msg")) == [errcode, 0]
    assert len((await sim.control("welcomes", method="GET"))["welcomes"]) == 1


async def test_unsafe_calls_retry_when_the_connection_cannot_be_made(session, clock):
    # Nothing listens on port 1: the request never left, so even a welcome may be retried.
    store = MemoryCredentialStore()
    far = datetime.fromtimestamp(clock.time() + 3600, UTC)
    await store.put(TOKEN_NAME, Credential("a-token", far), "seed")
    client = WeComClient(
        session,
        corp_id=CORP_ID,
        secret="s",
        agent_id=AGENT_ID,
        api_base="http://127.0.0.1:1",
        credentials=store,
        clock=clock,
        max_retries=2,
    )
    with pytest.raises(WeComTransportError) as caught:
        await client.send_welcome_msg("code", "hi")
    assert not isinstance(caught.value, WeComUncertain)
    assert caught.value.errcode == -1 and "cannot connect" in caught.value.errmsg
    assert "a-token" not in str(caught.value)
    assert len(clock.slept) == 2


async def test_app_messages_may_opt_into_at_least_once(sim, client):
    await sim.fault("message/send", http_status=500)
    with pytest.raises(WeComUncertain):
        await client.send_text("alice", "task due")

    await sim.fault("message/send", http_status=500)
    result = await client.send_text("alice", "task due", at_least_once=True)
    assert result.msgid
    assert await sim.count("message/send") == 3


def test_the_unsafe_set_names_the_calls_where_wecom_acts():
    assert {
        "externalcontact/send_welcome_msg",
        "externalcontact/add_msg_template",
        "message/send",
        "externalcontact/transfer_customer",
        "externalcontact/resigned/transfer_customer",
    } <= UNSAFE_APIS
    assert "externalcontact/mark_tag" not in UNSAFE_APIS


# ---- frequency limits --------------------------------------------------------------------


async def test_45009_opens_a_cooldown_that_fails_fast_then_lets_calls_through(sim, client, clock):
    await sim.fault("user/get", errcode=45009)
    with pytest.raises(WeComError) as caught:
        await client.user_get("alice")
    assert caught.value.errcode == 45009
    assert await sim.count("user/get") == 1

    clock.advance(30)
    with pytest.raises(WeComError) as caught:
        await client.user_get("alice")
    assert caught.value.errcode == 45009 and "not sent" in caught.value.errmsg
    assert await sim.count("user/get") == 1  # never reached WeCom
    assert len(await client.department_list()) == 2  # other APIs are unaffected

    clock.advance(31)
    assert (await client.user_get("alice"))["userid"] == "alice"
    assert await sim.count("user/get") == 2


async def test_the_simulators_own_minute_limit_triggers_the_cooldown(make_sim, make_client):
    sim = await make_sim(api_limit_per_minute=3)
    await sim.seed_guides("alice")
    client = make_client(api_base=sim.base)
    for _ in range(3):
        await client.get_follow_user_list()
    with pytest.raises(WeComError) as caught:
        await client.get_follow_user_list()
    assert caught.value.errcode == 45009
    with pytest.raises(WeComError):
        await client.get_follow_user_list()
    assert await sim.count("externalcontact/get_follow_user_list") == 4


async def test_calls_are_paced_to_calls_per_minute_per_api_on_the_injected_clock(
    sim, make_client, clock
):
    # WeCom's budget is per corp and per API (doc 90454), and so is the client's pacing.
    client = make_client(calls_per_minute=6)
    for _ in range(8):
        await client.get_follow_user_list()
        await client.user_get("alice")

    calls = await sim.calls()
    assert len(calls) == 17  # gettoken too, in a lane of its own
    for api in ("externalcontact/get_follow_user_list", "user/get"):
        times = [c["time"] for c in calls if c["api"] == api]
        assert len(times) == 8
        assert max(sum(1 for t in times if s <= t < s + 60) for s in times) == 6
    assert clock.time() - START >= 60


@pytest.mark.parametrize("per_minute", [1, 6, 59, 60, 61, 600, 10_000])
@pytest.mark.parametrize("idle", [0.0, 7.5])
async def test_token_bucket_never_admits_more_than_the_limit_in_any_minute(per_minute, idle):
    fake = FakeClock(datetime.fromtimestamp(0, UTC), real_share=0)
    bucket = TokenBucket(per_minute, clock=fake)
    stamps = []
    for i in range(per_minute * 3):
        await bucket.acquire()
        stamps.append(fake.time())
        if i % 5 == 2:
            fake.advance(idle)  # idle gaps refill the bucket
    # The most calls in any window [t, t + 60 s) that starts at a call.
    worst = max(bisect.bisect_left(stamps, t + 60 - 1e-6) - i for i, t in enumerate(stamps))
    assert worst <= per_minute
    if not idle:
        assert worst == per_minute  # back to back, the limit is reached (not undershot)


# ---- the welcome goes first ----------------------------------------------------------------

GET = "externalcontact/get"
WELCOME = "externalcontact/send_welcome_msg"


async def wait_until(check: Callable[[], Any], what: str) -> None:
    for _ in range(400):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def welcomes_sent(sim: Sim) -> list[dict[str, Any]]:
    return (await sim.control("welcomes", method="GET"))["welcomes"]


@pytest.mark.parametrize("pool", [{"limit": 4}, {"limit_per_host": 4}], ids=["limit", "per_host"])
async def test_a_welcome_passes_profile_fetches_queued_at_the_in_flight_gate(
    sim, clock, store, pool
):
    # Eight slow profile fetches (WeCom takes 0.5 s each) fill a pool of four connections;
    # the welcome submitted after them does not queue behind them.
    customers = [f"wm_p{i}" for i in range(8)]
    for ext in customers:
        await sim.add_contact("alice", ext)
    code = (await sim.add_contact("bob", "wm_new", welcome_code=True))["welcome_code"]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(**pool)) as narrow:
        client = WeComClient(
            narrow,
            corp_id=CORP_ID,
            secret=TEST_IDENTITY.secret,
            agent_id=AGENT_ID,
            api_base=sim.base,
            credentials=store,
            clock=clock,
        )
        await client.get_access_token()
        await sim.fault(GET, times=len(customers), latency=0.5)
        fetches = [asyncio.create_task(client.get_external_contact(ext)) for ext in customers]

        async def fetches_in_flight() -> bool:
            return await sim.count(GET) >= 3

        await wait_until(fetches_in_flight, "the profile fetches to reach WeCom")
        await client.send_welcome_msg(code, "欢迎", deadline=clock.time() + 20)
        profiles = await asyncio.gather(*fetches)

    calls = await sim.calls()
    [welcome] = [c for c in calls if c["api"] == WELCOME]
    ahead = [c for c in calls if c["api"] == GET and c["seq"] < welcome["seq"]]
    assert len(ahead) < 4  # only those already in flight; today it waited for all eight
    assert errcode_of_answer(welcome) == 0
    assert [w["external_userid"] for w in await welcomes_sent(sim)] == ["wm_new"]
    # Nothing lost, nothing sent twice.
    assert [p["external_contact"]["external_userid"] for p in profiles] == customers
    assert sorted(c["query"]["external_userid"] for c in calls if c["api"] == GET) == customers


async def test_calls_queued_at_the_gate_are_held_back_by_a_45009_met_meanwhile(sim, clock, store):
    customers = [f"wm_p{i}" for i in range(8)]
    for ext in customers:
        await sim.add_contact("alice", ext)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as narrow:
        client = WeComClient(
            narrow,
            corp_id=CORP_ID,
            secret=TEST_IDENTITY.secret,
            agent_id=AGENT_ID,
            api_base=sim.base,
            credentials=store,
            clock=clock,
        )
        await client.get_access_token()
        # Three fetches in flight (the fourth place is kept for welcomes), five at the gate;
        # WeCom answers the first with 45009.
        await sim.fault(GET, errcode=45009, latency=0.3)
        await sim.fault(GET, times=2, latency=0.3)
        results = await asyncio.gather(
            *(client.get_external_contact(ext) for ext in customers), return_exceptions=True
        )
    refused = [r for r in results if isinstance(r, WeComError)]
    assert len(refused) == 6 and {r.errcode for r in refused} == {45009}
    assert sum("not sent" in r.errmsg for r in refused) == 5
    assert await sim.count(GET) == 3  # the five waiting at the gate never reached WeCom


def errcode_of_answer(call: dict[str, Any]) -> int | None:
    return (call["answer"] or {}).get("errcode")


async def test_a_welcome_is_not_paced_behind_profile_fetches_when_the_budget_is_short(
    sim, make_client, clock
):
    # A budget of 60 calls a minute per API (WeCom's 10 000, scaled down): 30 profile fetches
    # take half a minute, and the welcome submitted after them goes at once on its own budget.
    client = make_client(calls_per_minute=60)
    await client.get_access_token()
    customers = [f"wm_p{i}" for i in range(30)]
    for ext in customers:
        await sim.add_contact("alice", ext)
    code = (await sim.add_contact("bob", "wm_new", welcome_code=True))["welcome_code"]
    start = clock.time()
    fetches = [asyncio.create_task(client.get_external_contact(ext)) for ext in customers]
    await asyncio.sleep(0)
    await client.send_welcome_msg(code, "欢迎", deadline=start + 20)
    await asyncio.gather(*fetches)

    calls = await sim.calls()
    [welcome] = [c for c in calls if c["api"] == WELCOME]
    assert errcode_of_answer(welcome) == 0 and welcome["time"] - start < 5
    gets = [c["time"] for c in calls if c["api"] == GET]
    assert len(gets) == 30 and max(gets) - start >= 29  # the fetches kept to their budget
    assert len(await welcomes_sent(sim)) == 1


async def test_within_one_api_calls_are_served_by_priority_then_deadline(sim, make_client, clock):
    client = make_client(calls_per_minute=60)
    await client.get_access_token()
    for ext in ("wm_bg", "wm_soon", "wm_normal"):
        await sim.add_contact("alice", ext)
    background = [asyncio.create_task(client.get_external_contact("wm_bg")) for _ in range(10)]
    await asyncio.sleep(0)
    with_deadline = asyncio.create_task(
        client.get_external_contact("wm_soon", deadline=clock.time() + 30)
    )
    await asyncio.sleep(0)
    normal = asyncio.create_task(client.get_external_contact("wm_normal", priority=Priority.NORMAL))
    await asyncio.gather(*background, with_deadline, normal)

    order = [c["query"]["external_userid"] for c in await sim.calls(GET)]
    # The first background fetch took the free token; then NORMAL, then the background fetch
    # with a deadline (earliest deadline first), then the rest in arrival order.
    assert order == ["wm_bg", "wm_normal", "wm_soon"] + ["wm_bg"] * 9


async def test_a_45009_on_profile_fetches_holds_them_back_and_does_not_delay_a_welcome(
    sim, make_client, clock
):
    client = make_client(calls_per_minute=60)
    await client.get_access_token()
    customers = [f"wm_p{i}" for i in range(20)]
    for ext in customers:
        await sim.add_contact("alice", ext)
    code = (await sim.add_contact("bob", "wm_new", welcome_code=True))["welcome_code"]
    await sim.fault(GET, errcode=45009)
    start = clock.time()
    fetches = [
        asyncio.create_task(client.get_external_contact(ext, deadline=start + 600))
        for ext in customers
    ]
    await asyncio.sleep(0)
    await client.send_welcome_msg(code, "欢迎", deadline=start + 20)
    results = await asyncio.gather(*fetches, return_exceptions=True)

    # WeCom refused the first fetch; the other nineteen were held back the moment it did
    # (not sent, and they spent none of the budget waiting for their turn).
    assert all(isinstance(r, WeComError) and r.errcode == 45009 for r in results)
    assert sum("not sent" in r.errmsg for r in results) == 19
    assert await sim.count(GET) == 1
    [welcome] = await sim.calls(WELCOME)
    assert errcode_of_answer(welcome) == 0 and welcome["time"] - start < 5

    clock.advance(61)  # the cooldown is over: background calls go again
    assert (await client.get_external_contact("wm_p0"))["external_contact"]
    assert await sim.count(GET) == 2


async def test_after_a_45009_calls_below_urgent_are_held_back_while_welcomes_still_go(
    sim, client, clock
):
    codes = [
        (await sim.add_contact("bob", f"wm_w{i}", welcome_code=True))["welcome_code"]
        for i in range(3)
    ]
    # message/send: after WeCom's 45009 a reminder (BACKGROUND) is held back for the cooldown.
    await sim.fault("message/send", errcode=45009)
    for _ in range(2):
        with pytest.raises(WeComError) as caught:
            await client.send_text("alice", "提醒", at_least_once=True)
        assert caught.value.errcode == 45009
    assert "not sent" in caught.value.errmsg
    assert await sim.count("message/send") == 1

    # send_welcome_msg: a 45009 does not stop the next welcome, whose code lives 20 s.
    await sim.fault(WELCOME, errcode=45009)
    with pytest.raises(WeComError) as caught:
        await client.send_welcome_msg(codes[0], "欢迎", deadline=clock.time() + 20)
    assert caught.value.errcode == 45009 and "not sent" not in caught.value.errmsg
    clock.advance(1)
    await client.send_welcome_msg(codes[1], "欢迎", deadline=clock.time() + 19)
    # WeCom took it, so the cooldown is over for every call to that API.
    await client.call(
        "POST",
        WELCOME,
        body={"welcome_code": codes[2], "text": {"content": "欢迎"}},
        priority=Priority.BACKGROUND,
    )
    assert [w["external_userid"] for w in await welcomes_sent(sim)] == ["wm_w1", "wm_w2"]
    assert [errcode_of_answer(c) for c in await sim.calls(WELCOME)] == [45009, 0, 0]

    clock.advance(60)  # message/send's cooldown ends with no call having tried it
    await client.send_text("alice", "提醒", at_least_once=True)
    assert await sim.count("message/send") == 2


async def test_while_an_api_cools_down_urgent_calls_try_it_one_at_a_time(sim, client, clock):
    codes = [
        (await sim.add_contact("bob", f"wm_w{i}", welcome_code=True))["welcome_code"]
        for i in range(4)
    ]
    await sim.fault(WELCOME, errcode=45009)
    with pytest.raises(WeComError):
        await client.send_welcome_msg(codes[0], "欢迎")
    # WeCom keeps refusing, slowly: the three welcomes waiting for it try one after another.
    await sim.fault(WELCOME, times=3, errcode=45009, latency=0.2)
    tries = [asyncio.create_task(client.send_welcome_msg(code, "欢迎")) for code in codes[1:]]
    most = 0
    while not all(t.done() for t in tries):
        pending = [c for c in await sim.calls(WELCOME) if c["answer"] is None]
        most = max(most, len(pending))
        await asyncio.sleep(0.02)
    results = await asyncio.gather(*tries, return_exceptions=True)
    assert [getattr(r, "errcode", None) for r in results] == [45009] * 3
    assert await sim.count(WELCOME) == 4 and most == 1
    assert await welcomes_sent(sim) == []


async def test_a_call_past_its_deadline_is_not_made_and_says_why(sim, make_client, clock):
    client = make_client(calls_per_minute=60)
    code = (await sim.add_contact("bob", "wm_late", welcome_code=True))["welcome_code"]
    with pytest.raises(WeComDeadlineExceeded) as caught:
        await client.send_welcome_msg(code, "欢迎", deadline=clock.time() - 1)
    assert caught.value.errcode == -1 and caught.value.api == WELCOME
    assert "deadline passed 1.0 s ago" in caught.value.errmsg
    assert "not sent" in caught.value.errmsg
    assert await sim.count(WELCOME) == 0

    # Waiting for its turn in a budget of one call a second: of five welcomes that must be
    # made within 2.5 s, the first ones are; the rest are not made at all, and take no turn
    # from a later call.
    codes = [
        (await sim.add_contact("bob", f"wm_w{i}", welcome_code=True))["welcome_code"]
        for i in range(5)
    ]
    start = clock.time()
    results = await asyncio.gather(
        *(client.send_welcome_msg(code, "欢迎", deadline=start + 2.5) for code in codes),
        return_exceptions=True,
    )
    made = results.count(None)
    assert 1 <= made < 5 and results[:made] == [None] * made
    assert all(isinstance(r, WeComDeadlineExceeded) for r in results[made:])
    calls = await sim.calls(WELCOME)
    assert len(calls) == made and all(c["time"] < start + 2.5 for c in calls)
    assert [errcode_of_answer(c) for c in calls] == [0] * made
    sent = [w["external_userid"] for w in await welcomes_sent(sim)]
    assert sent == [f"wm_w{i}" for i in range(made)]
    after = clock.time()
    await client.send_welcome_msg(codes[-1], "欢迎")  # its code still lives: sent, once
    [last] = [c for c in await sim.calls(WELCOME) if c["body"]["welcome_code"] == codes[-1]]
    assert last["time"] - after <= 1 and errcode_of_answer(last) == 0

    # A busy answer is retried only if the backoff ends before the deadline.
    code = (await sim.add_contact("bob", "wm_busy", welcome_code=True))["welcome_code"]
    await sim.fault(WELCOME, errcode=-1)
    with pytest.raises(WeComError) as caught:
        await make_client().send_welcome_msg(code, "欢迎", deadline=clock.time() + 0.2)
    assert caught.value.errcode == -1 and "no time left to retry" in caught.value.errmsg
    assert [errcode_of_answer(c) for c in await sim.calls(WELCOME)][-1] == -1
    assert not any(c["body"]["welcome_code"] == code for c in (await sim.calls(WELCOME))[:-1])


def test_default_priorities_put_the_welcome_first():
    assert default_priority(WELCOME) is Priority.URGENT
    assert default_priority("gettoken") is Priority.URGENT
    for api in (GET, "externalcontact/mark_tag", "message/send", "user/list"):
        assert default_priority(api) is Priority.BACKGROUND
    assert default_priority("externalcontact/batch/get_by_user") is Priority.BACKGROUND
    assert default_priority("externalcontact/add_contact_way") is Priority.NORMAL
    assert URGENT_APIS.isdisjoint(BACKGROUND_APIS)


# ---- WeCom's answers surfaced ------------------------------------------------------------


async def test_a_welcome_works_once_then_41051(sim, client):
    code = (await sim.add_contact("alice", "wm_anna", welcome_code=True))["welcome_code"]
    await client.send_welcome_msg(
        code,
        "欢迎光临，我是您的专属导购",
        [{"msgtype": "link", "link": {"title": "新品", "url": "https://example.com/n"}}],
    )
    with pytest.raises(WeComError) as caught:
        await client.send_welcome_msg(code, "again")
    assert caught.value.errcode == 41051
    welcomes = (await sim.control("welcomes", method="GET"))["welcomes"]
    assert [w["text"]["content"] for w in welcomes] == ["欢迎光临，我是您的专属导购"]
    assert welcomes[0]["attachments"][0]["link"]["title"] == "新品"


async def test_an_expired_welcome_code_is_refused(sim, client, clock):
    code = (await sim.add_contact("alice", "wm_anna", welcome_code=True))["welcome_code"]
    clock.advance(21)
    with pytest.raises(WeComError) as caught:
        await client.send_welcome_msg(code, "too late")
    assert caught.value.errcode == 41050


async def test_84061_no_relation_is_surfaced(sim, client):
    await sim.control("customers", {"external_userid": "wm_stranger", "name": "S"})
    with pytest.raises(WeComError) as caught:
        await client.remark("alice", "wm_stranger", remark="VIP")
    assert (caught.value.api, caught.value.errcode) == ("externalcontact/remark", 84061)
    assert "84061" in str(caught.value) and "externalcontact/remark" in str(caught.value)
    with pytest.raises(WeComError) as caught:
        await client.get_external_contact("wm_stranger")
    assert caught.value.errcode == 84061
    assert await sim.count("externalcontact/remark") == 1  # a refusal is not retried


# ---- pages -------------------------------------------------------------------------------


async def test_batch_get_by_user_iterator_walks_every_page(sim, client):
    for i in range(7):
        await sim.add_contact("alice", f"wm_a{i}")
    for i in range(2):
        await sim.add_contact("bob", f"wm_b{i}")

    page = await client.batch_get_by_user(["alice", "bob"], limit=3)
    assert isinstance(page, Page) and len(page.items) == 3 and page.next_cursor

    items = [item async for item in client.iter_batch_get_by_user(["alice", "bob"], limit=3)]
    seen = [(i["follow_info"]["userid"], i["external_contact"]["external_userid"]) for i in items]
    assert sorted(seen) == sorted(
        [("alice", f"wm_a{i}") for i in range(7)] + [("bob", f"wm_b{i}") for i in range(2)]
    )
    assert len(set(seen)) == 9
    assert await sim.count("externalcontact/batch/get_by_user") == 1 + 3


async def test_batch_get_by_user_checks_its_limits_client_side(sim, client):
    with pytest.raises(ValueError):
        await client.batch_get_by_user([f"u{i}" for i in range(101)])
    with pytest.raises(ValueError):
        await client.batch_get_by_user(["alice"], limit=101)
    assert await sim.count("externalcontact/batch/get_by_user") == 0


async def test_get_external_contact_follows_the_cursor(sim, client, monkeypatch):
    monkeypatch.setattr(simulator_contacts, "MAX_FOLLOW_USERS_PER_PAGE", 2)
    guides = [f"g{i}" for i in range(5)]
    await sim.seed_guides(*guides)
    for guide in guides:
        await sim.add_contact(guide, "wm_popular")

    contact = await client.get_external_contact("wm_popular")

    assert contact["external_contact"]["external_userid"] == "wm_popular"
    assert [f["userid"] for f in contact["follow_user"]] == guides
    assert await sim.count("externalcontact/get") == 3


async def test_mass_send_task_and_its_results_page_by_page(sim, client):
    for i in range(3):
        await sim.add_contact("alice", f"wm_{i}")
    result = await client.add_msg_template(
        external_userids=["wm_0", "wm_1", "wm_2", "wm_nobody"], sender="alice", text="春季上新"
    )
    assert isinstance(result, MsgTemplateResult)
    assert result.fail_list == ("wm_nobody",)
    await sim.control("groupmsg/confirm", {"msgid": result.msgid, "userid": "alice"})

    tasks = [t async for t in client.iter_groupmsg_task(result.msgid)]
    assert [(t["userid"], t["status"]) for t in tasks] == [("alice", 2)]
    sent = [s async for s in client.iter_groupmsg_send_result(result.msgid, "alice", limit=1)]
    assert sorted(s["external_userid"] for s in sent) == ["wm_0", "wm_1", "wm_2"]
    assert {s["status"] for s in sent} == {1}
    assert await sim.count("externalcontact/get_groupmsg_send_result") == 3

    listed = [
        m
        async for m in client.iter_groupmsg_list_v2(
            start_time=START - 3600, end_time=START + 3600, limit=1
        )
    ]
    assert [m["msgid"] for m in listed] == [result.msgid]
    await client.remind_groupmsg_send(result.msgid)
    await client.cancel_groupmsg_send(result.msgid)


# ---- tickets -----------------------------------------------------------------------------


async def test_tickets_are_cached_shared_and_refreshed(sim, make_client, store, clock):
    first, second = make_client(), make_client()
    jsapi = await first.get_jsapi_ticket()
    agent = await first.get_agent_ticket()
    assert jsapi != agent
    assert await second.get_jsapi_ticket() == jsapi
    assert await second.get_agent_ticket() == agent
    assert await first.get_jsapi_ticket() == jsapi

    assert await sim.count("get_jsapi_ticket") == 1
    assert await sim.count("ticket/get") == 1
    assert (await store.get(f"jsapi_ticket:{CORP_ID}:{AGENT_ID}")).value == jsapi
    assert (await store.get(f"agent_ticket:{CORP_ID}:{AGENT_ID}")).value == agent

    clock.advance(7200 - 299)
    assert await second.get_jsapi_ticket() != jsapi
    assert await sim.count("get_jsapi_ticket") == 2
    await first.discard_ticket("agent", agent)
    assert await first.get_agent_ticket() != agent
    assert await sim.count("ticket/get") == 2
    assert [c["query"]["type"] for c in await sim.calls("ticket/get")] == ["agent_config"] * 2


# ---- the rest of the API surface ---------------------------------------------------------


async def test_address_book_and_contacts(sim, client):
    await sim.add_contact("alice", "wm_anna", state="store-a")
    assert [u["userid"] for u in await client.user_list(1, fetch_child=True)] == ["alice", "bob"]
    assert await client.user_list(1) == []
    assert await client.list_external_contacts("alice") == ["wm_anna"]
    contact = await client.get_external_contact("wm_anna")
    assert contact["follow_user"][0]["state"] == "store-a"
    with pytest.raises(WeComError) as caught:
        await client.user_get("nobody")
    assert caught.value.errcode == 60111


async def test_tags_and_remarks(sim, client):
    await sim.add_contact("alice", "wm_anna")
    group = await client.add_corp_tag([{"name": "VIP"}, {"name": "新客"}], group_name="会员")
    tag_ids = [t["id"] for t in group["tag"]]
    assert len(tag_ids) == 2
    await client.mark_tag("alice", "wm_anna", add_tag=tag_ids)
    await client.remark("alice", "wm_anna", remark="老顾客", remark_mobiles=["13800000001"])
    follow = (await client.get_external_contact("wm_anna"))["follow_user"][0]
    assert sorted(t["tag_id"] for t in follow["tags"]) == sorted(tag_ids)
    assert follow["remark"] == "老顾客"
    groups = await client.get_corp_tag_list()
    assert [g["group_name"] for g in groups] == ["会员"]
    with pytest.raises(ValueError):
        await client.mark_tag("alice", "wm_anna")


async def test_contact_ways(sim, client):
    way = await client.add_contact_way(type=1, scene=2, users=["alice"], state="store-a")
    assert isinstance(way, ContactWay) and way.config_id and way.qr_code
    await client.update_contact_way(way.config_id, remark="门店A")
    assert (await client.get_contact_way(way.config_id))["remark"] == "门店A"
    page = await client.list_contact_way()
    assert [w["config_id"] for w in page.items] == [way.config_id]
    await client.del_contact_way(way.config_id)
    with pytest.raises(WeComError):
        await client.get_contact_way(way.config_id)
    with pytest.raises(ValueError):
        await client.add_contact_way(type=1, scene=2, users=["alice"], state="x" * 31)


async def test_transfers(sim, client):
    await sim.add_contact("alice", "wm_anna")
    outcome = await client.transfer_customer("alice", "bob", ["wm_anna", "wm_nobody"])
    assert outcome == {"wm_anna": 0, "wm_nobody": 40096}
    page = await client.transfer_result("alice", "bob")
    assert [(c["external_userid"], c["status"]) for c in page.items] == [("wm_anna", 2)]

    await sim.add_contact("bob", "wm_ben")
    await sim.control("users/delete", {"userid": "bob"})
    assert await client.resigned_transfer_customer("bob", "alice", ["wm_ben"]) == {"wm_ben": 0}
    page = await client.resigned_transfer_result("bob", "alice")
    assert [c["external_userid"] for c in page.items] == ["wm_ben"]


async def test_user_behavior_data_limits_are_checked_client_side(sim, client):
    end = int(START)
    with pytest.raises(ValueError, match="100"):
        await client.get_user_behavior_data([f"u{i}" for i in range(101)], end - 86_400, end)
    with pytest.raises(ValueError, match="30 days"):
        await client.get_user_behavior_data(["alice"], end - 31 * 86_400, end)
    with pytest.raises(ValueError):
        await client.get_user_behavior_data(["alice"], end, end - 1)
    assert await sim.count("externalcontact/get_user_behavior_data") == 0

    data = await client.get_user_behavior_data(
        ["alice"], datetime.fromtimestamp(end - 30 * 86_400, UTC), end
    )
    assert data and all("stat_time" in day for day in data)


async def test_app_messages_fill_in_the_agent_and_join_recipients(sim, client):
    result = await client.send_text(["alice", "ghost"], "今日任务 3 条")
    assert isinstance(result, AppMessageResult)
    assert result.invaliduser == ("ghost",) and result.msgid
    await client.send_textcard("alice", "回访提醒", "<div>张女士</div>", "https://example.com/t")
    await client.send_news("bob", [{"title": "新品", "url": "https://example.com/n"}])

    bodies = [c["body"] for c in await sim.calls("message/send")]
    assert [b["msgtype"] for b in bodies] == ["text", "textcard", "news"]
    assert {b["agentid"] for b in bodies} == {AGENT_ID}
    assert bodies[0]["touser"] == "alice|ghost"
    assert all("access_token" not in b for b in bodies)
    delivered = (await sim.control("app_messages", method="GET"))["messages"]
    assert [(m["userid"], m["msgtype"]) for m in delivered] == [
        ("alice", "text"),
        ("alice", "textcard"),
        ("bob", "news"),
    ]
    with pytest.raises(WeComError) as caught:
        await client.send_text("ghost", "nobody")
    assert caught.value.errcode == 81013


async def test_upload_media_is_multipart_and_usable(sim, client):
    await sim.fault("media/upload", http_status=503)  # safe to repeat: retried
    media = await client.upload_media("image", "cover.png", PNG, "image/png")
    assert isinstance(media, Media) and media.type == "image" and media.media_id
    assert media.created_at == int(START)
    assert (await sim.calls("media/upload"))[-1]["body"] == {"filename": "cover.png", "size": 40}

    code = (await sim.add_contact("alice", "wm_anna", welcome_code=True))["welcome_code"]
    attachment = {"msgtype": "image", "image": {"media_id": media.media_id}}
    await client.send_welcome_msg(code, attachments=[attachment])


# ---- hygiene -----------------------------------------------------------------------------


async def test_the_token_and_secret_never_reach_a_body_an_error_or_a_log(
    sim, client, store, caplog
):
    caplog.set_level(logging.DEBUG)
    await sim.fault("user/get", errcode=-1)
    await sim.fault("department/list", http_status=500, times=10)
    await sim.fault("externalcontact/mark_tag", errcode=40014)
    await sim.add_contact("alice", "wm_anna")
    group = await client.add_corp_tag([{"name": "VIP"}], group_name="会员")

    await client.user_get("alice")
    with pytest.raises(WeComTransportError) as caught:
        await client.department_list()
    await client.mark_tag("alice", "wm_anna", add_tag=[group["tag"][0]["id"]])

    tokens = {c["answer"]["access_token"] for c in await sim.calls("gettoken")}
    assert len(tokens) == 2
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("guidebot")]
    assert ours  # the retries were logged...
    for secret in (*tokens, TEST_IDENTITY.secret):
        assert all(secret not in line for line in ours)  # ...without the token or secret
        assert secret not in str(caught.value)
    for call in await sim.calls():
        assert not (isinstance(call["body"], dict) and "access_token" in call["body"])


def test_errors_are_typed_and_readable():
    error = WeComError("externalcontact/get", 84061, "not external contact")
    assert (error.api, error.errcode, error.errmsg) == (
        "externalcontact/get",
        84061,
        "not external contact",
    )
    assert str(error) == "WeCom externalcontact/get: errcode 84061: not external contact"
    assert issubclass(WeComTransportError, WeComError)
    assert issubclass(WeComUncertain, WeComError)
    assert not issubclass(WeComUncertain, WeComTransportError)


def _guidebot_imports(modules) -> list[str]:
    import ast
    import inspect

    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for module in modules
        for node in ast.walk(ast.parse(inspect.getsource(module)))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [node])
    ]
    return [name for name in imported if name and name.startswith("guidebot")]


def test_the_client_module_imports_nothing_of_guidebot_outside_wecom_but_the_clock():
    import importlib
    import pkgutil

    from guidebot import clock as clock_module

    # guidebot.wecom.client is a package: every module of it keeps to the rule.
    parts = pkgutil.iter_modules(client_module.__path__, f"{client_module.__name__}.")
    modules = [client_module, *(importlib.import_module(part.name) for part in parts)]
    guidebot = _guidebot_imports(modules)
    assert guidebot and all(
        name.startswith("guidebot.wecom") or name == "guidebot.clock" for name in guidebot
    )
    assert _guidebot_imports([clock_module]) == []  # and the clock is a stdlib-only leaf
