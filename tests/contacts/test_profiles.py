"""Adds recorded without a profile, and the refetch-profiles job that fills them in.

An add carrying a WelcomeCode is recorded from the event alone when externalcontact/get fails
transiently (the welcome cannot wait for the worker's retry); without a code the event is
retried as before. The job asks WeCom again for customers with an active relation and no
profile: a bounded batch per run, stopping at a transient failure, putting refused customers
to the back of the queue, and writing each profile once even when two instances run it.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from guidebot.contacts import profiles
from guidebot.contacts.jobs import refetch_profiles
from guidebot.contacts.models import Customer
from guidebot.intake.models import InboxEvent
from guidebot.web.keys import CLOCK, INBOX_WORKER, WECOM
from tests.harness import START

GET = "externalcontact/get"
MAX_RETRIES = 3  # the client's default


async def inbox(h) -> list[InboxEvent]:
    async with h.sessions() as session:
        return list(await session.scalars(select(InboxEvent).order_by(InboxEvent.id)))


async def refetch(h, **kwargs):
    if kwargs:
        return await profiles.refetch_profiles(
            h.sessions, h.app[WECOM], h.app[CLOCK].now(), **kwargs
        )
    return await refetch_profiles(h.sessions, h.app[WECOM], h.app[CLOCK])


async def add_without_profile(h, userid: str, ext: str) -> None:
    """An add WeCom answers 84061 for: recorded from the event, profile_fetched_at NULL."""
    await h.control("faults", {"api": GET, "errcode": 84061})
    await h.add(userid, ext)
    customer = await h.customer(ext)
    assert customer.name is None and customer.profile_fetched_at is None


async def test_an_add_with_a_welcome_code_is_recorded_despite_a_transient_failure(h):
    await h.control("faults", {"api": GET, "errcode": 45009})
    await h.add("g1", "wmc1", welcome_code=True, state="s11:poster")
    await h.app[INBOX_WORKER].settle()  # any welcome the shipped playbooks send

    [row] = await inbox(h)
    assert (row.status, row.attempts) == ("done", 1)
    relation = await h.relation("g1", "wmc1")
    assert relation.status == "active" and relation.created_at == START
    assert relation.state == "s11:poster"
    assert [e.kind for e in await h.log()] == ["added"]
    customer = await h.customer("wmc1")
    assert customer.name is None and customer.profile_fetched_at is None

    filled_at = h.advance(61)  # past the client's 45009 cooldown
    assert (await refetch(h)).filled == ["wmc1"]
    customer = await h.customer("wmc1")
    assert customer.name == "陈女士" and customer.profile_fetched_at == filled_at


async def test_an_add_without_a_welcome_code_is_retried_as_before(h):
    await h.control("faults", {"api": GET, "errcode": 45009})
    await h.add("g1", "wmc1", welcome_code=False)
    assert await h.relation("g1", "wmc1") is None
    [row] = await inbox(h)
    assert row.status == "pending" and "45009" in row.last_error

    h.advance(120)
    await h.drain()
    [row] = await inbox(h)
    assert (row.status, row.attempts) == ("done", 2)
    assert (await h.customer("wmc1")).profile_fetched_at is not None


async def test_the_job_applies_the_guides_follow_details_without_logging_an_edit(h):
    await add_without_profile(h, "g1", "wmc1")
    # The guide remarks the customer through the API (WeCom sends no callback for that).
    await h.app[WECOM].call(
        "POST",
        "externalcontact/remark",
        body={"userid": "g1", "external_userid": "wmc1", "remark": "陈姐"},
    )
    h.advance(10)
    report = await refetch(h)
    assert report.filled == ["wmc1"] and report.refused == []
    relation = await h.relation("g1", "wmc1")
    assert (relation.remark, relation.add_way) == ("陈姐", 1)
    assert [e.kind for e in await h.log()] == ["added"]


async def test_refused_customers_wait_their_turn_and_ended_relations_are_skipped(h):
    await add_without_profile(h, "g1", "wmc1")
    await add_without_profile(h, "g2", "wmc2")
    h.advance(10)
    await h.act("contact/delete_by_customer", {"userid": "g2", "external_userid": "wmc2"})

    # wmc2 has no active relation: never asked. WeCom refuses wmc1 again.
    h.advance(10)
    await h.control("faults", {"api": GET, "errcode": 84061})
    before = len(await h.calls(GET))
    report = await refetch(h)
    assert (report.candidates, report.refused, report.filled) == (1, ["wmc1"], [])
    assert [c["query"]["external_userid"] for c in (await h.calls(GET))[before:]] == ["wmc1"]

    # Not asked again at every run...
    h.advance(profiles.EVERY_SECONDS)
    assert (await refetch(h)).candidates == 0
    # ...but after RETRY_REFUSED_AFTER.
    h.advance(profiles.RETRY_REFUSED_AFTER.total_seconds())
    assert (await refetch(h)).filled == ["wmc1"]
    assert (await h.customer("wmc2")).profile_fetched_at is None


async def test_a_run_is_bounded_and_stops_at_a_transient_failure(h):
    for ext, userid in (("wmc1", "g1"), ("wmc2", "g2"), ("wmc3", "g3")):
        await add_without_profile(h, userid, ext)
        h.advance(1)

    report = await refetch(h, batch=2)
    assert report.candidates == 2 and report.filled == ["wmc1", "wmc2"]

    # A transient failure (45009: the client cools the API down) stops the run; the rest
    # waits for the next one.
    await h.add("g1", "wmc4")
    async with h.sessions() as session:
        row = await session.get(Customer, "wmc4")
        row.profile_fetched_at = None  # as if its add had been recorded without a profile
        row.updated_at = row.created_at
        await session.commit()
    await h.control("faults", {"api": GET, "errcode": 45009})
    before = len(await h.calls(GET))
    report = await refetch(h)
    assert report.candidates == 2 and report.filled == [] and "45009" in report.stopped
    assert len(await h.calls(GET)) == before + 1  # one refused call; the cooldown held the rest
    h.advance(61)
    await h.control("faults", {"api": GET, "errcode": -1, "times": MAX_RETRIES + 1})
    before = len(await h.calls(GET))
    report = await refetch(h)
    assert report.filled == [] and "errcode -1" in report.stopped
    assert len(await h.calls(GET)) == before + MAX_RETRIES + 1  # wmc4 was not asked
    assert sorted((await refetch(h)).filled) == ["wmc3", "wmc4"]


async def test_two_instances_running_at_once_write_each_profile_once(h):
    await add_without_profile(h, "g1", "wmc1")
    await add_without_profile(h, "g2", "wmc2")
    h.advance(10)
    first, second = await asyncio.gather(refetch(h), refetch(h))
    assert sorted(first.filled + second.filled) == ["wmc1", "wmc2"]
    for ext, name in (("wmc1", "陈女士"), ("wmc2", "刘先生")):
        customer = await h.customer(ext)
        assert customer.name == name and customer.profile_fetched_at == h.clock.now()
    assert (await refetch(h)).candidates == 0
