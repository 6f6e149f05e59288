"""Under WeCom's limits the welcome goes first, and never late.

The SOP engine's harness (the simulated WeCom and guidebot over real HTTP, one fake clock): the
app's WeComClient sleeps on that clock, so its backoff and its pacing take simulated time, as
they would take real time in production. A WelcomeCode lives 20 s on that clock; the simulator
answers 41050 to a welcome sent later than that.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import select

import guidebot.runtime
from guidebot.clock import FakeClock
from guidebot.contacts.models import Customer
from guidebot.wecom.client import WeComClient
from tests.sop_engine.conftest import FRIDAY_2055, make_harness

GET = "externalcontact/get"
WELCOME = "externalcontact/send_welcome_msg"


def errcode_of(call: dict) -> int | None:
    return (call.get("answer") or {}).get("errcode")


async def customer(h, ext: str) -> Customer:
    async with h.sessions() as session:
        found = await session.scalar(select(Customer).where(Customer.external_userid == ext))
    assert found is not None
    return found


class World(FakeClock):
    """The harness's clock, in a world where every sleep takes `per_sleep` seconds instead of
    the requested ones when set (a slow world); `use` builds the app's WeComClient with options."""

    def __init__(self, monkeypatch, start: datetime) -> None:
        super().__init__(start)
        self.monkeypatch = monkeypatch
        self.per_sleep: float | None = None

    async def sleep(self, seconds: float) -> None:
        await super().sleep(self.per_sleep or seconds)

    def use(self, **options) -> None:
        client = partial(WeComClient, **options)
        self.monkeypatch.setattr(guidebot.runtime, "WeComClient", client)


@pytest.fixture
def world(monkeypatch) -> World:
    return World(monkeypatch, FRIDAY_2055)


@pytest.fixture
def clock(world) -> World:
    return world


async def test_a_profile_read_that_runs_late_is_left_for_later_and_the_welcome_goes(
    world, aiohttp_client, database_url, clock, sop_dir, playbooks
):
    # WeCom is busy and slow to recover: every backoff of the profile read takes 8 s. Retrying
    # it to the end (3 backoffs, 24 s) would outlive the WelcomeCode; 10 s after the add the read
    # is given up, the add recorded without a profile, and the welcome goes at once.
    world.per_sleep = 8
    h = await make_harness(aiohttp_client, database_url, clock, sop_dir, playbooks)
    await h.control("faults", {"api": GET, "errcode": -1, "times": 4})
    added_at = h.clock.now()
    await h.add("g1", "wmc1")

    gets = await h.calls(GET)
    assert [errcode_of(c) for c in gets] == [-1, -1]  # the third try came too late to make
    [welcome] = await h.calls(WELCOME)
    assert errcode_of(welcome) == 0
    assert (await h.task("g1", "wmc1", "welcome")).status == "sent"
    assert h.clock.now() - added_at < timedelta(seconds=20)
    assert (await customer(h, "wmc1")).profile_fetched_at is None  # refetch-profiles' job now
    assert len(await h.welcomes()) == 1


async def test_with_a_short_budget_no_welcome_is_sent_late_or_twice(
    world, aiohttp_client, database_url, clock, sop_dir, playbooks
):
    # One call a second per API (WeCom's 10 000 a minute, scaled down) and thirty adds at once:
    # the welcomes cannot all be made within their 20 s. Those that can are sent once; the
    # others are not sent at all (no welcome reaches WeCom after its code died).
    world.use(calls_per_minute=60)
    h = await make_harness(aiohttp_client, database_url, clock, sop_dir, playbooks)
    customers = [f"wmc{i}" for i in range(1, 31)]
    for ext in customers[3:]:  # wmc1..wmc3 are seeded by the harness
        await h.control("customers", {"external_userid": ext, "name": f"顾客{ext[3:]}"})
    for ext in customers:
        answer = await h.control(
            "contact/add", {"userid": "g1", "external_userid": ext, "welcome_code": True}
        )
        assert answer["delivered"]
    await h.drain()

    welcome_calls = await h.calls(WELCOME)
    assert 41050 not in {errcode_of(c) for c in welcome_calls}  # nothing sent past its code
    assert {errcode_of(c) for c in welcome_calls} == {0}
    codes = Counter(c["body"]["welcome_code"] for c in welcome_calls)
    assert set(codes.values()) == {1}
    welcomed = Counter(w["external_userid"] for w in await h.welcomes())
    assert set(welcomed.values()) == {1}

    tasks = await h.tasks(step_id="welcome")
    assert len(tasks) == len(customers)
    sent = {t.external_userid for t in tasks if t.status == "sent"}
    assert sent == set(welcomed)
    expired = [t for t in tasks if t.status == "expired"]
    assert len(sent) + len(expired) == len(customers)
    assert sent and expired
    # Those the client could not make in time say so.
    late = [t for t in expired if "before WeCom could be called" in (t.reason or "")]
    assert late, [t.reason for t in expired]
    assert all("not sent" in t.reason for t in late)
