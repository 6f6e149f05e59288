"""An add whose externalcontact/get fails transiently is still welcomed at once.

The WelcomeCode lives 20 s: retrying the event later would lose the welcome. The add is recorded
from the event alone (the customer's profile_fetched_at stays NULL), the welcome goes out in the
same processing with a greeting that needs no name, and the refetch-profiles job fills the
profile in once WeCom answers again (after the client's 45009 cooldown, on the fake clock).

The app's WeComClient gets a short timeout and a backoff sleep that does not wait, so a
"timeout" fault (hanging past the client's timeout on every retry) costs about two seconds.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import select

import guidebot.runtime
from guidebot.contacts import jobs as contacts_jobs
from guidebot.contacts.models import Customer, Department, Guide, Relation, RelationEvent
from guidebot.intake.models import InboxEvent
from guidebot.sop.messages import message_variables
from guidebot.sop.models import Action, SopEnrollment
from guidebot.sop.templates import render_message
from guidebot.web.keys import CLOCK, WECOM
from guidebot.wecom.client import WeComClient
from tests.sop_engine.conftest import make_harness

GET = "externalcontact/get"
TIMEOUT = 0.5  # the app's WeCom client timeout in this module
MAX_RETRIES = 3  # the client's default: a safe call is tried 4 times before it gives up
COOLDOWN = 60  # the client's 45009 cooldown
NAMELESS_WELCOME = (
    "您好，我是张江店的导购王芳，很高兴认识您！\n"
    "新品上架、尺码搭配、门店活动，有任何问题随时在这里找我 😊"
)


@pytest.fixture
def quick_wecom(monkeypatch) -> None:
    """A short timeout; the client's backoff sleeps on the harness's clock as always."""
    monkeypatch.setattr(guidebot.runtime, "WeComClient", partial(WeComClient, timeout=TIMEOUT))


@pytest.fixture
async def h(quick_wecom, aiohttp_client, database_url, clock, sop_dir, playbooks):
    return await make_harness(aiohttp_client, database_url, clock, sop_dir, playbooks)


async def refetch(h):
    return await contacts_jobs.refetch_profiles(h.sessions, h.app[WECOM], h.app[CLOCK])


async def customer(h, ext: str) -> Customer:
    async with h.sessions() as session:
        found = await session.get(Customer, ext)
    assert found is not None
    return found


async def relation(h, userid: str, ext: str) -> Relation | None:
    async with h.sessions() as session:
        return await session.scalar(
            select(Relation).where(Relation.guide_userid == userid, Relation.external_userid == ext)
        )


async def inbox(h) -> list[InboxEvent]:
    async with h.sessions() as session:
        return list(await session.scalars(select(InboxEvent).order_by(InboxEvent.id)))


async def faults_left(h) -> list[dict]:
    return (await (await h.sim.get("/_sim/faults")).json())["faults"]


FAULTS = {
    "45009": {"errcode": 45009},
    "timeout": {"timeout": True, "times": MAX_RETRIES + 1},
    "busy": {"errcode": -1, "times": MAX_RETRIES + 1},
}


@pytest.mark.parametrize("fault", list(FAULTS.values()), ids=list(FAULTS))
async def test_a_failed_profile_read_still_welcomes_and_the_profile_follows(h, fault):
    await h.control("faults", {"api": GET, **fault})
    added_at = h.clock.now()
    await h.add("g1", "wmc1")  # with a WelcomeCode; the welcome runs right after the commit
    assert await faults_left(h) == []  # every faulted attempt was made

    # Handled in one go: done on the first attempt, not left for a retry.
    [row] = await inbox(h)
    assert (row.status, row.attempts) == ("done", 1)
    # Exactly one welcome, now, with the add's code, greeting without a name or an id.
    [welcome] = await h.welcomes()
    assert (welcome["userid"], welcome["external_userid"]) == ("g1", "wmc1")
    assert welcome["text"]["content"] == NAMELESS_WELCOME
    assert (await h.task("g1", "wmc1", "welcome")).status == "sent"
    assert len(await h.enrollments(external_userid="wmc1")) == 2

    # The relation is recorded from the event; the profile is missing, and known to be.
    pair = await relation(h, "g1", "wmc1")
    assert pair is not None and pair.status == "active" and pair.created_at == added_at
    assert pair.store_id == 11 and pair.add_way is None
    async with h.sessions() as session:
        kinds = list(await session.scalars(select(RelationEvent.kind)))
    assert kinds == ["added"]
    missing = await customer(h, "wmc1")
    assert missing.name is None and missing.profile_fetched_at is None

    # After the client's cooldown, the refetch job fills the profile in.
    filled_at = h.advance(timedelta(seconds=COOLDOWN + 1))
    report = await refetch(h)
    assert report.filled == ["wmc1"] and report.stopped is None
    found = await customer(h, "wmc1")
    assert (found.name, found.gender, found.unionid) == ("陈女士", 2, "u-wmc1")
    assert found.profile_fetched_at == filled_at
    pair = await relation(h, "g1", "wmc1")
    assert pair.add_way == 1  # this guide's follow_user entry was applied too

    # Idempotent: nothing more to ask, and nothing is sent twice.
    gets = len(await h.calls(GET))
    h.advance(timedelta(seconds=COOLDOWN + 1))
    again = await refetch(h)
    assert again.candidates == 0 and again.filled == []
    assert len(await h.calls(GET)) == gets
    assert len(await h.welcomes()) == 1
    assert [r.status for r in await inbox(h)] == ["done"]


async def test_during_the_45009_cooldown_the_refetch_job_asks_wecom_nothing(h):
    await h.control("faults", {"api": GET, "errcode": 45009})
    await h.add("g1", "wmc1")
    assert len(await h.welcomes()) == 1
    gets = len(await h.calls(GET))

    h.advance(timedelta(seconds=COOLDOWN - 10))  # the client is still cooling down
    report = await refetch(h)
    assert report.candidates == 1 and report.filled == []
    assert report.stopped is not None and "45009" in report.stopped
    assert len(await h.calls(GET)) == gets  # failed fast, never reached WeCom
    assert (await customer(h, "wmc1")).profile_fetched_at is None

    h.advance(timedelta(seconds=11))
    assert (await refetch(h)).filled == ["wmc1"]
    assert (await customer(h, "wmc1")).name == "陈女士"


async def test_an_add_without_a_welcome_code_is_still_retried(h):
    await h.control("faults", {"api": GET, "errcode": 45009})
    answer = await h.control(
        "contact/add", {"userid": "g1", "external_userid": "wmc1", "welcome_code": False}
    )
    assert answer["delivered"]
    await h.drain()

    [row] = await inbox(h)
    assert row.status == "pending" and "45009" in row.last_error
    assert await relation(h, "g1", "wmc1") is None
    assert await h.enrollments() == []

    h.advance(timedelta(seconds=COOLDOWN + 60))  # past the cooldown and the worker's backoff
    await h.drain()
    [row] = await inbox(h)
    assert (row.status, row.attempts) == ("done", 2)
    assert (await relation(h, "g1", "wmc1")).status == "active"
    found = await customer(h, "wmc1")
    assert found.name == "陈女士" and found.profile_fetched_at is not None
    assert await h.welcomes() == []  # no code, no welcome


async def _variables(h, action: str, *, name: str | None, remark: str | None = None):
    task = type("Task", (), {})()
    task.external_userid, task.guide_userid, task.action = "wmc1", "g1", action
    task.id, task.content, task.step_id = 1, None, "welcome"
    task.playbook_id, task.playbook_version = "first_contact", 1
    enrollment = SopEnrollment(settings={"name": "首次添加欢迎"})
    async with h.sessions() as session:
        guide = await session.get(Guide, "g1")
        store = await session.get(Department, 11)
    who = Customer(external_userid="wmc1", name=name)
    pair = Relation(guide_userid="g1", external_userid="wmc1", remark=remark)
    return message_variables(h.runtime, task, enrollment, who, guide, store, pair)


async def test_the_welcome_reads_well_without_the_customers_name(h):
    def welcome(variables) -> str:
        return render_message(h.runtime.env, "welcome.j2", variables)

    nameless = await _variables(h, Action.WELCOME, name=None)
    assert nameless["customer"]["name"] == ""
    text = welcome(nameless)
    assert text == NAMELESS_WELCOME
    assert "None" not in text and "wmc1" not in text

    # A name, or else the guide's remark, is used when there is one.
    assert welcome(await _variables(h, Action.WELCOME, name="陈女士")).startswith("陈女士您好，")
    remarked = await _variables(h, Action.WELCOME, name=None, remark="陈姐")
    assert welcome(remarked).startswith("陈姐您好，")
    # The template itself guards against a missing name, too.
    assert welcome({**nameless, "customer": {**nameless["customer"], "name": None}}) == (
        NAMELESS_WELCOME
    )
    # A reminder to the guide still says which customer it is about.
    reminder = await _variables(h, Action.REMIND, name=None)
    assert reminder["customer"]["name"] == "wmc1"
