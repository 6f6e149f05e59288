"""The guide chatbot, through the simulated WeCom's /_sim/messages: each command in Chinese
and in English with its expected answer; passive replies; answered exactly once; WeCom's
30-messages-a-minute limit per member."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from defusedxml.ElementTree import fromstring
from sqlalchemy import select

from guidebot.bot.models import BotReply
from guidebot.bot.replies import flush_replies
from guidebot.contacts.jobs import behavior_sync
from guidebot.content import links, service
from guidebot.db.parking import ParkedRow
from guidebot.intake.inbox import InboxEntry
from guidebot.web import passive_reply
from guidebot.web.keys import CLOCK, INBOX, INBOX_WORKER, SESSIONS, SETTINGS, WECOM
from guidebot.wecom.events import parse_event
from guidebot.wecom.simulator.delivery import text_message_xml
from tests.support import TEST_IDENTITY


def content_of(reply_xml: str) -> str:
    root = fromstring(reply_xml)
    assert root.findtext("MsgType") == "text"
    assert root.findtext("FromUserName") == TEST_IDENTITY.corp_id
    assert root.findtext("AgentID") == str(TEST_IDENTITY.agent_id)
    return root.findtext("Content")


async def say(h, text: str, userid: str = "g1") -> str | None:
    """The guide writes to the app; the passive answer's text, or None (empty 200)."""
    answer = await h.control("messages", {"userid": userid, "text": text})
    assert answer["delivered"], answer
    assert "reply_error" not in answer, answer
    return content_of(answer["reply"]) if answer["reply"] else None


async def answer(h, text: str, userid: str = "g1") -> str:
    """The bot's text answer, passive or, when it was not ready within the passive budget (a
    busy machine: the budget is real time), the one sent by message/send after it."""
    passive = await say(h, text, userid)
    if passive is not None:
        return passive
    await settle(h)
    sent = [m for m in await h.app_messages(userid) if m["msgtype"] == "text"]
    assert sent, f"no answer to {text!r}, passive or sent"
    return sent[-1]["text"]["content"]


async def settle(h) -> None:
    """Let the worker and any background sending finish."""
    await h.drain()
    await h.app[INBOX_WORKER].settle()
    for _ in range(50):
        tasks = h.app.get(passive_reply.BACKGROUND) or set()
        if not tasks:
            break
        await asyncio.gather(*list(tasks), return_exceptions=True)


async def flush(h):
    app = h.app
    return await flush_replies(app[SESSIONS], app[WECOM], app[CLOCK], app[SETTINGS])


HELP_ZH = (
    "我可以帮你：\n• 任务 — 今天的待办任务（带编号）\n"
    "• 完成 12 / 跳过 12 原因 / 稍后 12 2h — 处理编号 12 的任务\n"
    "• 素材 <关键词> — 找素材，附可转发的追踪链接\n"
    "• 客户 <名字> — 查看你的客户档案\n• 业绩 — 今天、本周、本月的数据与门店平均\n"
    "• 帮助 — 显示本说明"
)
HELP_EN = (
    "I can help with:\n• tasks — today's open tasks, numbered\n"
    "• done 12 / skip 12 reason / snooze 12 2h — act on task 12\n"
    "• content <word> — find content, with tracked links ready to forward\n"
    "• customer <name> — one of your customers' profile\n"
    "• stats — your numbers today, this week and this month beside your store's average\n"
    "• help — this list"
)


async def test_help_in_both_languages(h):
    assert await say(h, "帮助") == HELP_ZH
    assert await say(h, "help") == HELP_EN
    assert await say(h, "？") == HELP_ZH
    assert await say(h, "你好") == "没听懂「你好」。\n" + HELP_ZH
    assert await say(h, "hello there") == "I did not understand “hello there”.\n" + HELP_EN
    await settle(h)
    assert await h.app_messages("g1") == []  # every answer went passively, none twice


async def test_tasks(h):
    await h.add("g1", "wmc1")
    await h.add("g1", "wmc3")
    assert await say(h, "任务") == "今天没有待办任务。"
    assert await say(h, "tasks") == "No open tasks today."
    late = await h.task("g1", "wmc3", due_in=timedelta(hours=-30), step="day1")
    soon = await h.task("g1", "wmc1", due_in=timedelta(hours=2))  # 14:00 in Shanghai
    await h.task("g1", "wmc1", due_in=timedelta(days=2), step="day7")  # not today
    await h.task("g3", "wmc1")  # someone else's
    # Each task by its number and by name (the playbook's, the step's action), never its ids.
    assert await say(h, "任务") == (
        "今天的任务（2）：\n"
        f"#{late} 赵女士 · 7 天回访 · 群发任务 · 已逾期\n"
        f"   http://guidebot.test/sidebar?customer=wmc3&task={late}\n"
        f"#{soon} 陈女士 · 7 天回访 · 群发任务 · 14:00\n"
        f"   http://guidebot.test/sidebar?customer=wmc1&task={soon}\n"
        "回复「完成 编号」「跳过 编号 原因」「稍后 编号 2h」处理任务"
    )
    english = await say(h, "Tasks")
    assert english.startswith(f"Today's tasks (2):\n#{late} 赵女士 · 7 天回访 · mass-send task")


async def test_content_comes_as_news_cards_with_tracked_links(h):
    spring = await h.item(
        kind="link",
        title="春季新品上市",
        url="https://example.com/s",
        summary="十款新色",
        cover_url="https://cdn.example.com/s.jpg",
        tags=["新品"],
    )
    await h.item(kind="text", title="Spring greeting", body="Hello!", tags=["spring"])
    await h.item(kind="text", title="徐汇店专属春季", body="x", stores=["12"])
    assert await say(h, "素材 春季") is None  # cards are not a passive text reply
    await settle(h)
    [message] = await h.app_messages("g1")
    assert message["msgtype"] == "news"
    [article] = message["news"]["articles"]
    assert (article["title"], article["description"]) == ("春季新品上市", "十款新色")
    assert article["picurl"] == "https://cdn.example.com/s.jpg"
    claims = links.verify(h.settings.secret_key, article["url"].rsplit("/r/", 1)[1])
    assert (claims.item_id, claims.guide, claims.customer) == (spring["id"], "g1", None)

    assert await say(h, "content spring") is None
    await settle(h)
    english = (await h.app_messages("g1"))[-1]["news"]["articles"]
    assert [a["title"] for a in english] == ["Spring greeting"]

    assert await say(h, "素材 不存在的东西") == "没有找到与「不存在的东西」相关的素材。"
    assert await say(h, "content nothing") == "No content matches “nothing”."
    assert len(await h.app_messages("g1")) == 2


async def test_customer_card_shows_only_my_customers(h):
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    item = await h.item(kind="link", title="春季新品", url="https://example.com/s")
    token, _claims = links.mint(
        h.settings.secret_key, item_id=item["id"], guide="g1", customer="wmc1", now=h.clock.now()
    )
    await h.client.get(f"/r/{token}", allow_redirects=False)
    await h.task("g1", "wmc1")
    assert await say(h, "客户 陈") == (
        # The open moved the customer from 新客 to 互动中 (guidebot.contacts.lifecycle).
        "陈女士\n状态：正常｜阶段：互动中\n门店：张江店\n添加于：2026-03-10\n标签：无\n待办任务：1\n"
        "最近打开：春季新品（03-10 12:00）\n侧边栏：http://guidebot.test/sidebar?customer=wmc1"
    )
    assert await say(h, "customer 陈女士") == (
        "陈女士\nStatus: active | Stage: Engaged\nStore: 张江店\nAdded: 2026-03-10\nTags: none\n"
        "Open tasks: 1\n"
        "Last opened: 春季新品（03-10 12:00）\nSidebar: http://guidebot.test/sidebar?customer=wmc1"
    )
    assert await say(h, "客户 刘") == "你的客户里没有名字含「刘」的。"  # g2's customer
    assert await say(h, "customer") == (
        "Write the customer's name after “customer”, e.g. customer Chen"
    )


async def test_a_customer_is_found_by_my_remark_through_the_one_search(h):
    """The bot asks contacts' search_customers: name, external_userid, or this guide's remark."""
    await h.add("g1", "wmc1")
    await h.add("g1", "wmc3")
    await h.add("g3", "wmc3")
    await h.act("contact/edit", {"userid": "g1", "external_userid": "wmc1", "remark": "VIP陈姐"})
    await h.act("contact/edit", {"userid": "g3", "external_userid": "wmc3", "remark": "老朋友"})

    card = await say(h, "客户 陈姐")
    assert card.splitlines()[0] == "陈女士（备注：VIP陈姐）"
    assert card.endswith("侧边栏：http://guidebot.test/sidebar?customer=wmc1")
    assert (await say(h, "customer wmc3")).splitlines()[0] == "赵女士"
    # g3's remark is g3's: g1 does not find wmc3 by it.
    assert await say(h, "客户 老朋友") == "你的客户里没有名字含「老朋友」的。"
    many = (await say(h, "客户 女士")).splitlines()
    assert many[0] == "找到 2 位客户，请写全名："
    assert sorted(many[1:]) == ["• 赵女士", "• 陈女士"]


async def test_the_card_dates_a_relation_on_its_stores_calendar(h):
    """g1 adds wmc1 in 张江店 (Shanghai) at 12:00 on 03-10, then moves to 徐汇店, which keeps Los
    Angeles time (still 03-09 there): the relation began on 03-10, its store's day."""
    await h.add("g1", "wmc1")
    await h.api("PATCH", "/stores/12", json={"timezone": "America/Los_Angeles"})
    await h.act("users", {"userid": "g1", "name": "王芳", "department": [12], "notify": True})
    card = await say(h, "客户 陈")
    assert "门店：张江店\n添加于：2026-03-10\n" in card, card


async def test_stats_beside_the_store_average(h):
    await h.add("g1", "wmc1")
    await h.add("g1", "wmc2")
    await h.add("g3", "wmc3")  # g3 works in the same store
    await h.act("contact/delete_by_customer", {"userid": "g1", "external_userid": "wmc2"})
    item = await h.item(kind="link", title="春季新品", url="https://example.com/s")
    now = h.clock.now()
    async with h.sessions() as session, session.begin():
        for n, customer in enumerate(("wmc1", "wmc2")):
            await service.record_forward(
                session,
                ref=f"t{n}",
                item_id=item["id"],
                guide="g1",
                customer=customer,
                via="sidebar",
                sent_at=now,
                now=now,
            )
    token, _ = links.mint(
        h.settings.secret_key, item_id=item["id"], guide="g1", customer="wmc1", now=now
    )
    await h.client.get(f"/r/{token}", allow_redirects=False)
    assert await say(h, "业绩") == (
        "我的业绩（张江店）\n"
        "今天：新客 2｜流失 1｜转发 2｜打开 1\n"
        "　门店平均：新客 1.5｜流失 0.5｜转发 1｜打开 0.5\n"
        "本周：新客 2｜流失 1｜转发 2｜打开 1\n"
        "　门店平均：新客 1.5｜流失 0.5｜转发 1｜打开 0.5\n"
        "本月：新客 2｜流失 1｜转发 2｜打开 1\n"
        "　门店平均：新客 1.5｜流失 0.5｜转发 1｜打开 0.5"
    )
    english = await say(h, "stats")
    assert english.splitlines()[:3] == [
        "My numbers (张江店)",
        "Today: new 2 | lost 1 | forwards 2 | opens 1",
        "  store average: new 1.5 | lost 0.5 | forwards 1 | opens 0.5",
    ]
    h.advance(86400)
    tomorrow = await say(h, "业绩")
    assert tomorrow.splitlines()[1] == "今天：新客 0｜流失 0｜转发 0｜打开 0"
    assert tomorrow.splitlines()[3] == "本周：新客 2｜流失 1｜转发 2｜打开 1"


async def test_stats_show_wecoms_service_figures_to_yesterday(h):
    """业绩 adds WeCom's contact statistics (get_user_behavior_data) this month up to
    yesterday, as the behavior-sync job kept them; before any, the line is left out."""
    await h.add("g1", "wmc1")
    assert "服务" not in await say(h, "业绩")
    await h.control("chats", {"userid": "g1", "external_userid": "wmc1", "from": "customer"})
    h.advance(12 * 60)  # g1 answers 12 minutes later, twice
    await h.control(
        "chats", {"userid": "g1", "external_userid": "wmc1", "from": "member", "count": 2}
    )
    h.advance(86400)
    await behavior_sync(h.sessions, h.app[WECOM], h.app[CLOCK])
    stats = await say(h, "业绩")
    assert stats.splitlines()[-1] == (
        "服务（企业微信统计，本月至昨日）："
        "聊天 1｜消息 2｜回复率 100%｜首次回复 12 分钟｜删除/拉黑 0"
    ), stats
    english = await say(h, "stats")
    assert english.splitlines()[-1].startswith(
        "Service (WeCom's figures, this month to yesterday): chats 1 | messages 2"
    )


async def test_a_retried_message_is_answered_the_same_way_once(h):
    msg_id = 7_000_000_000_000_001
    xml = text_message_xml(
        TEST_IDENTITY.corp_id, "g1", int(h.clock.time()), "帮助", msg_id, TEST_IDENTITY.agent_id
    )
    first = await h.control("callbacks", {"xml": xml})
    again = await h.control("callbacks", {"xml": xml})  # WeCom's retry: same MsgId
    assert content_of(first["reply"]) == content_of(again["reply"]) == HELP_ZH
    await settle(h)
    assert await h.app_messages("g1") == []  # the worker did not ALSO send it
    async with h.sessions() as session:
        [row] = list(await session.scalars(select(BotReply)))
    assert (row.msg_id, row.status) == (str(msg_id), "passive")


async def test_a_slow_answer_goes_by_message_send_once(h, monkeypatch):
    compute = passive_reply.compute_reply

    async def slow(*args):
        await asyncio.sleep(0.3)
        return await compute(*args)

    monkeypatch.setattr(passive_reply, "compute_reply", slow)
    monkeypatch.setattr(passive_reply, "PASSIVE_BUDGET", 0.1)
    assert await say(h, "帮助") is None  # not ready in time: an empty 200
    await settle(h)
    [message] = await h.app_messages("g1")
    assert message["text"]["content"] == HELP_ZH
    async with h.sessions() as session:
        [row] = list(await session.scalars(select(BotReply)))
    assert row.status == "sent"


async def test_the_worker_answers_what_the_callback_did_not(h):
    """A stored message the callback never answered (say, `guidebot inbox replay`)."""
    xml = text_message_xml(
        TEST_IDENTITY.corp_id, "g1", int(h.clock.time()), "help", 42, TEST_IDENTITY.agent_id
    )
    await h.app[INBOX].store(InboxEntry.of(parse_event(xml), xml))
    await settle(h)
    [message] = await h.app_messages("g1")
    assert message["text"]["content"] == HELP_EN
    await h.control("callbacks", {"xml": xml})  # WeCom retries after all: no second answer
    await settle(h)
    assert len(await h.app_messages("g1")) == 1


async def test_not_a_guide_gets_no_answer(h):
    await h.control("users", {"userid": "hq1", "name": "总部", "department": [1]})
    assert await say(h, "帮助", userid="hq1") is None
    await settle(h)
    assert await h.app_messages("hq1") == []


async def test_thirty_messages_a_minute_to_one_member(h, caplog):
    caplog.set_level(logging.INFO, logger="guidebot.bot")
    extra = 2
    await h.item(kind="link", title="春季新品", url="https://example.com/s")
    for _ in range(30 + extra):
        assert await say(h, "素材 春季") is None
    await settle(h)
    calls = await h.calls("message/send")
    assert len(calls) == 30
    assert all(not c.get("dropped") for c in calls)  # WeCom never had to drop one
    assert "queued" in caplog.text
    async with h.sessions() as session:
        statuses = [r.status for r in await session.scalars(select(BotReply))]
    assert statuses.count("pending") == extra

    h.advance(61)
    report = await flush(h)
    assert report.sent == extra
    assert len(await h.app_messages("g1")) == 30 + extra

    # An answer that waits more than 10 minutes is dropped with a log line, not sent late.
    for _ in range(31):
        await say(h, "素材 春季")
    await settle(h)
    h.advance(11 * 60)
    report = await flush(h)
    assert report.dropped >= 1 and "dropped" in caplog.text


async def test_a_queued_answer_it_cannot_send_is_parked_or_failed_and_the_others_go(h):
    """Queued answers as an older version may have stored them: one without its kind (it
    cannot be read), one news card of nine articles (WeCom takes at most eight). Each used to
    stop the flush, every run, and every answer queued behind it waited for good."""
    now = h.clock.now()
    replies = {
        "1001": ("g1", {"text": "旧版本的回答"}),
        "1002": ("g2", {"kind": "news", "articles": [{"title": f"t{i}"} for i in range(9)]}),
        "1003": ("g3", {"kind": "text", "text": "你好", "articles": []}),
    }
    async with h.sessions() as session, session.begin():
        for msg_id, (guide, reply) in replies.items():
            session.add(
                BotReply(
                    msg_id=msg_id,
                    guide_userid=guide,
                    request="帮助",
                    reply=reply,
                    status="pending",
                    created_at=now,
                    updated_at=now,
                )
            )

    report = await flush(h)
    assert (report.sent, report.failed, report.parked) == (1, 1, 1)
    assert [m["text"]["content"] for m in await h.app_messages("g3")] == ["你好"]
    async with h.sessions() as session:
        rows = {r.msg_id: r for r in await session.scalars(select(BotReply))}
        [parked] = list(await session.scalars(select(ParkedRow)))
    assert (rows["1001"].status, rows["1002"].status, rows["1003"].status) == (
        "pending",
        "failed",
        "sent",
    )
    assert rows["1002"].error.startswith("unexpected error: ValueError")
    assert (parked.job, parked.table_name, parked.row_key) == ("bot-replies", "bot_replies", "1001")
    assert parked.reason == "KeyError: 'kind'" and parked.detail == "the bot's answer to g1"
    # Later runs skip the parked answer and send nothing again.
    report = await flush(h)
    assert (report.sent, report.failed, report.parked) == (0, 0, 0)
    assert len(await h.calls("message/send")) == 1


async def test_concurrent_flushes_send_each_answer_once_and_thirty_a_minute(h):
    """Each message's flush and the periodic job run at once; on PostgreSQL (read committed)
    they used to both find one answer pending, or both count 29 of the minute's 30, and send."""
    now = h.clock.now()
    async with h.sessions() as session, session.begin():
        for n in range(40):
            session.add(
                BotReply(
                    msg_id=str(9000 + n),
                    guide_userid="g1",
                    request="帮助",
                    reply={"kind": "text", "text": f"answer {n}"},
                    status="pending",
                    created_at=now,
                    updated_at=now,
                )
            )
    reports = await asyncio.gather(*(flush(h) for _ in range(8)))
    calls = await h.calls("message/send")
    assert len(calls) == 30, len(calls)
    assert len({c["body"]["text"]["content"] for c in calls}) == 30  # none twice
    assert sum(r.sent for r in reports) == 30
