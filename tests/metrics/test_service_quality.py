"""Service quality beside the numbers: WeCom's contact statistics (get_user_behavior_data, doc
92132), read daily per guide by the behavior-sync job against the simulated WeCom, and shown in
the metrics API, the admin dashboard and the weekly manager report.

Cast as in tests/metrics/conftest.py: store 11 (g1, g3), store 12 (g2), customers wmc01..
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from guidebot.contacts.jobs import behavior_sync
from guidebot.contacts.models import GuideBehaviorDaily
from guidebot.db.parking import ParkedRow
from guidebot.metrics.models import MetricsDirty
from guidebot.web.keys import CLOCK, WECOM
from guidebot.wecom.client import WeComError
from tests.metrics.conftest import at, make_harness
from tests.metrics.test_report import run_reports
from tests.web.conftest import Sessions, admin_cookie

API = "externalcontact/get_user_behavior_data"
SERVICE = ("chats", "messages", "reply_rate", "avg_reply_minutes", "negative_feedback")


async def chat(h, guide: str, ext: str, sender: str, count: int = 1) -> None:
    await h.control(
        "chats", {"userid": guide, "external_userid": ext, "from": sender, "count": count}
    )


async def sync(h):
    return await behavior_sync(h.sessions, h.app[WECOM], h.app[CLOCK])


async def a_day_of_chats(h) -> None:
    """Tuesday 10 March: c01 writes twice and g1 answers after 30 min with three messages;
    c02 writes and gets no answer, then deletes g1."""
    h.set_time(at(10, 9))
    await h.add("g1", "wmc01", code=False)  # no welcome: the chats below are the day's first
    await h.add("g1", "wmc02", code=False)
    h.set_time(at(10, 10))
    await chat(h, "g1", "wmc01", "customer", 2)
    h.set_time(at(10, 10, 30))
    await chat(h, "g1", "wmc01", "member", 3)
    h.set_time(at(10, 11))
    await chat(h, "g1", "wmc02", "customer")
    h.set_time(at(10, 15))
    await h.lose("g1", "wmc02")


async def metrics(h, path: str, first: str = "2026-03-10", last: str = "2026-03-10") -> dict:
    await h.settle()
    status, body = await h.api("GET", path, params={"from": first, "to": last})
    assert status == 200, body
    return {name: body["metrics"][name] for name in SERVICE} | {
        "lost_customers": body["metrics"]["lost_customers"]
    }


async def test_wecoms_figures_per_guide_per_day_in_the_metrics(h):
    await a_day_of_chats(h)
    h.set_time(at(11, 6, 30))
    report = await sync(h)
    assert (report.guides, report.parked) == (3, 0)

    assert await metrics(h, "/guides/g1/metrics") == {
        "chats": 1,
        "messages": 3,
        "reply_rate": 0.5,  # one of the two chats the customers started
        "avg_reply_minutes": 30.0,
        "negative_feedback": 1,
        "lost_customers": 1,
    }
    # The store: g3 had no chat a customer started, so only g1's day is in the rate.
    store = await metrics(h, "/stores/11/metrics")
    assert (store["chats"], store["reply_rate"], store["avg_reply_minutes"]) == (1, 0.5, 30.0)
    quiet = await metrics(h, "/guides/g2/metrics")
    assert (quiet["chats"], quiet["reply_rate"], quiet["avg_reply_minutes"]) == (0, None, None)

    # One guide per call (WeCom sums several), at most 30 days per call, the 180 days WeCom
    # keeps on a guide's first read: 6 calls each.
    calls = await h.calls(API)
    assert sorted({c["body"]["userid"][0] for c in calls}) == ["g1", "g2", "g3"]
    assert all(len(c["body"]["userid"]) == 1 for c in calls)
    assert all(c["body"]["end_time"] - c["body"]["start_time"] <= 29 * 86_400 for c in calls)
    assert all(c["answer"]["errcode"] == 0 for c in calls)
    assert len(calls) == 18
    async with h.sessions() as session:
        days = await session.scalar(
            select(func.count()).where(GuideBehaviorDaily.guide_userid == "g1")
        )
    assert days == 179  # the 180 days WeCom keeps, today (not over yet) left for tomorrow


async def test_the_daily_read_is_idempotent_and_rereads_only_the_last_days(h):
    await a_day_of_chats(h)
    h.set_time(at(11, 6, 30))
    await sync(h)
    await h.settle()
    before = await h.rows()

    again = await sync(h)  # the same morning again: nothing new, nothing written, nothing dirty
    assert again.written == 0
    async with h.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(MetricsDirty)) == 0
    await h.settle()
    assert await h.rows() == before

    # The next morning: one call per guide, from two days before the last day read.
    h.set_time(at(11, 16))
    await chat(h, "g1", "wmc01", "customer")
    h.set_time(at(11, 16, 10))
    await chat(h, "g1", "wmc01", "member")
    h.set_time(at(12, 6, 30))
    so_far = len(await h.calls(API))
    await sync(h)
    later = (await h.calls(API))[so_far:]
    assert len(later) == 3
    assert all(c["body"]["end_time"] - c["body"]["start_time"] == 3 * 86_400 for c in later)
    two_days = await metrics(h, "/guides/g1/metrics", last="2026-03-11")
    assert (two_days["chats"], two_days["messages"]) == (2, 4)
    assert two_days["reply_rate"] == 0.75  # 50% and 100%, averaged over the two days
    assert two_days["avg_reply_minutes"] == 20.0  # 30 and 10 minutes


async def test_a_guide_wecom_refuses_is_parked_and_the_others_are_read(h):
    await a_day_of_chats(h)
    h.set_time(at(11, 6, 30))
    await h.fault(API, 60011)  # g1 (read first) is not visible to the app
    report = await sync(h)
    assert (report.guides, report.parked) == (2, 1)
    async with h.sessions() as session:
        [parked] = list(await session.scalars(select(ParkedRow)))
        kept = set(await session.scalars(select(GuideBehaviorDaily.guide_userid).distinct()))
    assert (parked.job, parked.row_key) == ("behavior-sync", "g1")
    assert "60011" in parked.reason
    assert kept == {"g2", "g3"}


async def test_a_wecom_refusing_the_app_fails_the_run_and_parks_nobody(h):
    h.set_time(at(11, 6, 30))
    await h.fault(API, 48002)  # the app may not call it: no guide's fault
    with pytest.raises(WeComError, match="48002"):
        await sync(h)
    async with h.sessions() as session:
        assert list(await session.scalars(select(ParkedRow))) == []


@pytest.fixture
async def hm(aiohttp_client, database_url, clock, sop_dir):
    return await make_harness(aiohttp_client, database_url, clock, sop_dir, store_managers=("g1",))


async def test_the_dashboard_and_the_weekly_report_show_them(hm):
    h = hm
    await a_day_of_chats(h)
    h.set_time(at(11, 6, 30))
    await sync(h)
    await h.settle()
    h.set_time(at(16, 9, 0))  # Monday: last week's report to the manager of store 11
    report = await run_reports(h)
    assert report.weekly == 1
    [weekly] = [m for m in await h.app_messages("g1") if "周报" in m["textcard"]["title"]]
    assert (
        "服务 聊天 1 · 消息 3 · 回复率 50% · 首次回复 30 分钟 · 删除/拉黑 1"
        in (weekly["textcard"]["description"])
    )
    hq = Sessions(h)
    response = await h.client.get(
        "/admin",
        params={"from": "2026-03-10", "to": "2026-03-10"},
        headers=admin_cookie(await hq.account("boss", "hq", [])),
    )
    assert response.status == 200
    page = await response.text()
    assert 'data-kpi="reply_rate">50.0%<' in page
    assert 'data-kpi="avg_reply_minutes">30 分钟<' in page
    assert 'data-kpi="chats">1<' in page
