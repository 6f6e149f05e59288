"""The bot's answers: what each command replies, and how a reply reaches the guide.

A reply is text (fit for WeCom's passive reply) or news cards (sent by message/send). Answers
that are not given passively are queued in `bot_replies` and sent by `flush_replies`, which
keeps WeCom's limit of 30 app messages a minute to one member: it counts its own message/send
calls per member over the last 60 s, leaves the rest queued (a log line says so), and drops a
reply that waited longer than STALE_AFTER (another log line) rather than answering late.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot import i18n
from guidebot.bot import commands
from guidebot.bot.commands import Command
from guidebot.bot.group_stats import group_line
from guidebot.bot.models import BotReply, ReplyStatus
from guidebot.bot.task_commands import task_command
from guidebot.config import Settings
from guidebot.contacts import queries
from guidebot.contacts.behavior import guide_figures
from guidebot.contacts.directory import store_zone
from guidebot.contacts.lifecycle import stage_word
from guidebot.contacts.models import (
    Customer,
    Department,
    Guide,
    GuideStatus,
    Relation,
    RelationStatus,
)
from guidebot.content import links, service
from guidebot.content.models import ContentItem
from guidebot.db.parking import describe_error, is_row_error, park_apart, unparked
from guidebot.db.turns import take_turns
from guidebot.groups import queries as group_queries
from guidebot.i18n import NP_
from guidebot.sop import queries as tasks
from guidebot.sop.group_steps import guide_group_steps
from guidebot.sop.models import TaskStatus
from guidebot.wecom.client import Priority, WeComClient, WeComError, WeComUncertain

log = logging.getLogger(__name__)

MEMBER_MESSAGES_PER_MINUTE = 30  # WeCom: one member gets at most 30 app messages a minute
STALE_AFTER = timedelta(minutes=10)  # an answer queued this long is dropped, not sent late
CLAIM_STALE = timedelta(seconds=30)  # a passive claim this old lost its callback
MAX_TEXT_BYTES = 2000  # message/send text allows 2048 bytes

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True, slots=True)
class Reply:
    kind: str  # "text" or "news"
    text: str = ""
    articles: tuple[dict[str, str], ...] = field(default_factory=tuple)

    @classmethod
    def of_text(cls, text: str) -> Reply:
        return cls("text", _clip(text))

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "articles": list(self.articles)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        return cls(data["kind"], data.get("text", ""), tuple(data.get("articles") or ()))


def _clip(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"


# ---- the words -------------------------------------------------------------------------------

# The words, English as the catalogs' msgids (guidebot/locale, context "bot"); TEXT has
# them in each language the bot answers in, by the command's language ("zh" or "en").
WORDS = {
    "help": NP_(
        "bot",
        "I can help with:\n• tasks — today's open tasks, numbered\n"
        "• done 12 / skip 12 reason / snooze 12 2h — act on task 12\n"
        "• content <word> — find content, with tracked links ready to forward\n"
        "• customer <name> — one of your customers' profile\n"
        "• stats — your numbers today, this week and this month beside your "
        "store's average\n• help — this list",
    ),
    "not_understood": NP_("bot", "I did not understand “{text}”."),
    "no_tasks": NP_("bot", "No open tasks today."),
    "tasks_head": NP_("bot", "Today's tasks ({n}):"),
    "tasks_foot": NP_("bot", "Reply “done N”, “skip N reason” or “snooze N 2h” to act on one"),
    "overdue": NP_("bot", "overdue"),
    "snoozed": NP_("bot", "later {t}"),
    "no_content": NP_("bot", "No content matches “{q}”."),
    "no_content_all": NP_("bot", "The content library is empty for now."),
    "customer_ask": NP_("bot", "Write the customer's name after “customer”, e.g. customer Chen"),
    "no_customer": NP_("bot", "None of your customers has “{q}” in their name."),
    "customers_many": NP_("bot", "{n} customers match; write the full name:"),
    "status": {
        "active": NP_("bot", "active"),
        "lost": NP_("bot", "deleted you"),
        "removed": NP_("bot", "removed by you"),
        "transferred": NP_("bot", "transferred"),
    },
    "card": NP_(
        "bot",
        "{name}{remark}\nStatus: {status} | Stage: {stage}\nStore: {store}\nAdded: {since}\n"
        "Tags: {tags}\nOpen tasks: {tasks}\nLast opened: {opened}\nSidebar: {link}",
    ),
    "remark": NP_("bot", " (remark: {remark})"),
    "none": NP_("bot", "none"),
    "stats_head": NP_("bot", "My numbers ({store})"),
    "periods": (NP_("bot", "Today"), NP_("bot", "This week"), NP_("bot", "This month")),
    "mine": NP_("bot", "{period}: new {new} | lost {lost} | forwards {fwd} | opens {opens}"),
    "average": NP_(
        "bot", "  store average: new {new} | lost {lost} | forwards {fwd} | opens {opens}"
    ),
    "service": NP_(
        "bot",
        "Service (WeCom's figures, this month to yesterday): chats {chats} | "
        "messages {messages} | reply rate {rate} | first reply {minutes} | "
        "deleted/blocked {negative}",
    ),
    "minutes": NP_("bot", "{n} min"),
    "community": NP_(
        "bot",
        "Groups and Moments this month: group sends {sent}/{sends} sent | "
        "Moments {published}/{moments} published",
    ),
    "no_store": NP_("bot", "no store"),
    # A line of the card under the tags, only when the customer is in a customer group.
    "groups": NP_("bot", "Groups: {names}"),
}
TEXT = i18n.in_languages(WORDS)


def help_reply(command: Command, text: str = "") -> Reply:
    words = TEXT[command.lang]
    if command.understood or not text.strip():
        return Reply.of_text(words["help"])
    shown = text.strip()[:30]
    return Reply.of_text(words["not_understood"].format(text=shown) + "\n" + words["help"])


# ---- building answers ------------------------------------------------------------------------


async def active_guide(session: AsyncSession, userid: str) -> Guide | None:
    guide = await session.get(Guide, userid)
    return guide if guide is not None and guide.status == GuideStatus.ACTIVE else None


async def build_reply(
    session: AsyncSession, guide: str, text: str, *, now: datetime, settings: Settings
) -> Reply:
    """The answer to one message from a guide. 完成 / 跳过 / 稍后 change the task in this
    session: the caller commits them with the reply's row (guidebot.bot.handlers)."""
    command = commands.parse(text)
    if command.name in commands.TASK_COMMANDS:
        _, zone = await _zone(session, guide, now, settings)
        return Reply.of_text(await task_command(session, guide, command, now=now, zone=zone))
    if command.name == commands.TASKS:
        return await tasks_reply(session, guide, command, now=now, settings=settings)
    if command.name == commands.CONTENT:
        return await content_reply(session, guide, command, now=now, settings=settings)
    if command.name == commands.CUSTOMER:
        return await customer_reply(session, guide, command, now=now, settings=settings)
    if command.name == commands.STATS:
        return await stats_reply(session, guide, command, now=now, settings=settings)
    return help_reply(command, text)


def sidebar_link(settings: Settings, customer: str | None = None, task: int | None = None) -> str:
    query = []
    if customer:
        query.append(f"customer={quote(customer)}")
    if task:
        query.append(f"task={task}")
    return f"{settings.public_url}/sidebar" + ("?" + "&".join(query) if query else "")


async def _zone(session: AsyncSession, guide: str, now: datetime, settings: Settings):
    store = await service.guide_store(session, guide, now)
    return store, store_zone(store, settings.timezone)


async def _names(session: AsyncSession, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = await session.execute(
        select(Customer.external_userid, Customer.name).where(Customer.external_userid.in_(ids))
    )
    return {ext: name or ext for ext, name in rows}


async def tasks_reply(
    session: AsyncSession, guide: str, command: Command, *, now: datetime, settings: Settings
) -> Reply:
    words = TEXT[command.lang]
    _, zone = await _zone(session, guide, now, settings)
    local = now.astimezone(zone)
    end_of_day = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    due = await tasks.open_tasks(session, guide, due_before=end_of_day.astimezone(UTC), limit=20)
    if not due:
        return Reply.of_text(words["no_tasks"])
    names = await _names(session, sorted({t.external_userid for t in due}))
    lines = [words["tasks_head"].format(n=len(due))]
    for task in due:
        when = task.due_at.astimezone(zone)
        stamp = when.strftime("%H:%M") if when.date() == local.date() else words["overdue"]
        if task.status == TaskStatus.SNOOZED:
            stamp = words["snoozed"].format(t=when.strftime("%H:%M"))
        name = names.get(task.external_userid, task.external_userid)
        # The task's own number: it stays the same however the list changes.
        step = f"{task.playbook_name} · {task.step_name(command.lang)}"
        lines.append(f"#{task.id} {name} · {step} · {stamp}")
        lines.append(f"   {sidebar_link(settings, task.external_userid, task.id)}")
    lines.append(words["tasks_foot"])
    return Reply.of_text("\n".join(lines))


async def content_reply(
    session: AsyncSession, guide: str, command: Command, *, now: datetime, settings: Settings
) -> Reply:
    words = TEXT[command.lang]
    store = await service.guide_store(session, guide, now)
    found, _ = await service.search_items(
        session,
        words=command.arg,
        live_at=now,
        store_code=store.code if store else None,
        restrict_store=True,
        limit=5,
    )
    if not found:
        key = "no_content" if command.arg else "no_content_all"
        return Reply.of_text(words[key].format(q=command.arg))
    return Reply("news", articles=tuple(_article(item, guide, now, settings) for item in found))


def _article(item: ContentItem, guide: str, now: datetime, settings: Settings) -> dict[str, str]:
    token, _ = links.mint(settings.secret_key, item_id=item.id, guide=guide, now=now)
    article = {
        "title": item.title[:128],
        "description": (item.summary or "")[:170],
        "url": links.link_url(settings.public_url, token),
    }
    if item.cover_url:
        article["picurl"] = item.cover_url
    return article


async def customer_reply(
    session: AsyncSession, guide: str, command: Command, *, now: datetime, settings: Settings
) -> Reply:
    words = TEXT[command.lang]
    wanted = command.arg.strip()
    if not wanted:
        return Reply.of_text(words["customer_ask"])
    # This guide's customers only (any status), by name, remark or external_userid.
    found = await queries.search_customers(
        session, guide=guide, words=wanted, order="name", per_page=20
    )
    pairs = [
        (next(r for r in found.relations[c.external_userid] if r.guide_userid == guide), c)
        for c in found.customers
    ]
    # Active relations first, each group by name (the sort is stable).
    rows = sorted(pairs, key=lambda pair: pair[0].status != RelationStatus.ACTIVE)
    if not rows:
        return Reply.of_text(words["no_customer"].format(q=wanted))
    exact = [(r, c) for r, c in rows if wanted in (c.name, r.remark)]
    if len(rows) > 1 and len(exact) != 1:
        lines = [words["customers_many"].format(n=found.total)]
        lines += [f"• {c.name or c.external_userid}" for _, c in rows[:8]]
        return Reply.of_text("\n".join(lines))
    relation, customer = exact[0] if exact else rows[0]
    return Reply.of_text(
        await _card(session, guide, relation, customer, words, now=now, settings=settings)
    )


async def _card(
    session: AsyncSession,
    guide: str,
    relation: Relation,
    customer: Customer,
    words: dict[str, Any],
    *,
    now: datetime,
    settings: Settings,
) -> str:
    store, zone = await _zone(session, guide, now, settings)
    relation_store = (
        await session.get(Department, relation.store_id) if relation.store_id else store
    )
    open_tasks = await tasks.open_tasks(session, guide, customer=customer.external_userid)
    opened = await service.recent_opens(
        session, guide=guide, customer=customer.external_userid, limit=1
    )
    # The relation's date is a day of the store it belongs to, wherever the guide works now.
    since_zone = store_zone(relation_store, settings.timezone) if relation_store else zone
    since = (
        relation.created_at.astimezone(since_zone).strftime("%Y-%m-%d")
        if relation.created_at
        else "-"
    )
    tags = [t.get("name") or t.get("id") for t in relation.tags or []]
    in_groups = await group_queries.customer_groups(session, customer.external_userid)
    names = "、".join(v.group.name or words["none"] for v in in_groups)
    groups = "\n" + words["groups"].format(names=names) if in_groups else ""
    last = (
        f"{opened[0][1].title}（{opened[0][0].opened_at.astimezone(zone):%m-%d %H:%M}）"
        if opened
        else words["none"]
    )
    return words["card"].format(
        name=customer.name or customer.external_userid,
        remark=words["remark"].format(remark=relation.remark) if relation.remark else "",
        status=words["status"].get(relation.status, relation.status),
        stage=await stage_word(session, customer.external_userid, words is TEXT["en"]),
        store=relation_store.name if relation_store else words["no_store"],
        since=since,
        tags=(", ".join(t for t in tags if t) or words["none"]) + groups,
        tasks=len(open_tasks),
        opened=last,
        link=sidebar_link(settings, customer.external_userid),
    )


def _periods(now: datetime, zone) -> list[tuple[datetime, datetime]]:
    local = now.astimezone(zone)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - timedelta(days=day.weekday())
    month = day.replace(day=1)
    end = now + timedelta(seconds=1)
    return [(start.astimezone(UTC), end) for start in (day, week, month)]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


async def stats_reply(
    session: AsyncSession, guide: str, command: Command, *, now: datetime, settings: Settings
) -> Reply:
    words = TEXT[command.lang]
    store, zone = await _zone(session, guide, now, settings)
    peers = await service.store_guides(session, store.id, now) if store else []
    if guide not in peers:
        peers.append(guide)
    lines = [words["stats_head"].format(store=store.name if store else words["no_store"])]
    for label, (start, end) in zip(words["periods"], _periods(now, zone), strict=True):
        numbers = await service.activity(session, peers, start, end)
        mine = numbers[guide]
        lines.append(
            words["mine"].format(
                period=label,
                new=mine.new_customers,
                lost=mine.lost_customers,
                fwd=mine.forwards,
                opens=mine.unique_opens,
            )
        )
        if store is not None:
            count = len(peers)

            def avg(name: str, numbers=numbers, count=count) -> str:
                return _num(sum(getattr(a, name) for a in numbers.values()) / count)

            lines.append(
                words["average"].format(
                    new=avg("new_customers"),
                    lost=avg("lost_customers"),
                    fwd=avg("forwards"),
                    opens=avg("unique_opens"),
                )
            )
    month_start, month_end = _periods(now, zone)[2]
    groups = await group_line(session, guide, month_start, month_end, command.lang)
    if groups:
        lines.append(groups)
    service_line = await _service_line(session, guide, words, now.astimezone(zone).date())
    if service_line:
        lines.append(service_line)
    month_start, month_end = _periods(now, zone)[2]
    mine = await guide_group_steps(session, guide, month_start, month_end)
    if mine["group_sends"] or mine["moments"]:  # only for a guide the group steps reach
        lines.append(
            words["community"].format(
                sent=mine["group_sent"],
                sends=mine["group_sends"],
                published=mine["published"],
                moments=mine["moments"],
            )
        )
    return Reply.of_text("\n".join(lines))


async def _service_line(
    session: AsyncSession, guide: str, words: dict[str, Any], today: date
) -> str | None:
    """WeCom's figures this month to yesterday (behavior-sync reads them each morning)."""
    yesterday = today - timedelta(days=1)
    mine = (await guide_figures(session, [guide], yesterday.replace(day=1), yesterday)).get(guide)
    if mine is None:
        return None
    rate, minutes = mine["reply_rate"], mine["avg_reply_minutes"]
    return words["service"].format(
        chats=mine["chats"],
        messages=mine["messages"],
        rate="-" if rate is None else f"{rate * 100:.0f}%",
        minutes="-" if minutes is None else words["minutes"].format(n=_num(minutes)),
        negative=mine["negative_feedback"],
    )


# ---- the outbox ------------------------------------------------------------------------------


@dataclass(slots=True)
class FlushReport:
    sent: int = 0
    queued: int = 0  # left for later: the member's minute limit
    dropped: int = 0
    failed: int = 0
    unknown: int = 0
    parked: int = 0  # replies it could not build or read (guidebot.db.parking)


JOB = "bot-replies"  # as guidebot.app names the job; the replies it parks are filed under it


async def flush_replies(
    sessions: Sessions,
    wecom: WeComClient,
    clock: Any,
    settings: Settings,
    *,
    guide: str | None = None,
    limit: int = 200,
) -> FlushReport:
    """Send queued answers by message/send within each member's minute limit.

    Also the periodic job (every few seconds): it takes over passive claims whose callback
    died, answers what is due, and drops what waited too long.
    """
    report = FlushReport()
    now = clock.now()
    async with sessions() as session, session.begin():
        await session.execute(
            update(BotReply)
            .where(BotReply.status == ReplyStatus.CLAIMED, BotReply.created_at < now - CLAIM_STALE)
            .values(status=ReplyStatus.PENDING, updated_at=now)
        )
    query = select(BotReply.msg_id, BotReply.guide_userid).where(
        BotReply.status == ReplyStatus.PENDING,
        unparked(JOB, BotReply.__tablename__, BotReply.msg_id),
    )
    if guide is not None:
        query = query.where(BotReply.guide_userid == guide)
    async with sessions() as session:
        queued = (await session.execute(query.order_by(BotReply.created_at).limit(limit))).all()
    for msg_id, userid in queued:
        try:
            outcome = await _send_one(sessions, wecom, clock, settings, msg_id, userid)
        except Exception as exc:
            # A queued reply it cannot build or read (one an older version wrote) is parked
            # with its reason, and later runs skip it; the others go out all the same.
            await park_apart(
                sessions,
                exc,
                job=JOB,
                table=BotReply.__tablename__,
                key=msg_id,
                now=now,
                detail=f"the bot's answer to {userid}",
            )
            outcome = "parked"
        if outcome is not None:
            setattr(report, outcome, getattr(report, outcome) + 1)
    return report


async def _send_one(
    sessions: Sessions,
    wecom: WeComClient,
    clock: Any,
    settings: Settings,
    msg_id: str,
    guide_userid: str,
) -> str | None:
    now = clock.now()
    async with sessions() as session, session.begin():
        # Concurrent flushes (each message's, the periodic job's) take this member's answers
        # one at a time: two could otherwise both find a row pending and both send it, or both
        # count 29 of the minute's 30 and both send.
        await take_turns(session, f"member-messages/{guide_userid}")
        row = await session.get(BotReply, msg_id, populate_existing=True)
        if row is None or row.status != ReplyStatus.PENDING:
            return None
        if now - row.created_at > STALE_AFTER:
            row.status, row.updated_at = ReplyStatus.DROPPED, now
            row.error = "waited too long behind the member's message limit"
            log.warning(
                "bot reply to %s (msg %s) dropped: queued since %s, over WeCom's %d messages "
                "a minute to one member",
                row.guide_userid,
                msg_id,
                row.created_at.isoformat(),
                MEMBER_MESSAGES_PER_MINUTE,
            )
            return "dropped"
        recent = await session.scalar(
            select(func.count())
            .select_from(BotReply)
            .where(
                BotReply.guide_userid == row.guide_userid,
                BotReply.status.in_(ReplyStatus.COUNTED),
                BotReply.sent_at > now - timedelta(seconds=60),
            )
        )
        if (recent or 0) >= MEMBER_MESSAGES_PER_MINUTE:
            log.info(
                "bot reply to %s (msg %s) queued: %d app messages to them in the last minute",
                row.guide_userid,
                msg_id,
                recent,
            )
            return "queued"
        if row.reply is None:  # a passive claim taken over: compute the answer now
            reply = await build_reply(
                session, row.guide_userid, row.request, now=now, settings=settings
            )
            row.reply = reply.as_json()
        reply = Reply.from_json(row.reply)
        guide = row.guide_userid
        row.status, row.sent_at, row.updated_at = ReplyStatus.SENDING, now, now
    try:
        # The guide is waiting for this answer: ahead of reminders on message/send.
        if reply.kind == "news":
            await wecom.send_news(guide, list(reply.articles), priority=Priority.NORMAL)
        else:
            await wecom.send_text(guide, reply.text, priority=Priority.NORMAL)
    except WeComUncertain as exc:
        await _settle(sessions, msg_id, clock, ReplyStatus.UNKNOWN, str(exc))
        return "unknown"
    except WeComError as exc:
        log.warning("bot reply to %s (msg %s) failed: %s", guide, msg_id, exc)
        await _settle(sessions, msg_id, clock, ReplyStatus.FAILED, str(exc))
        return "failed"
    except Exception as exc:
        if not is_row_error(exc):
            raise
        # Committed as `sending` already: settled, so it neither hangs there nor goes again.
        log.exception("bot reply to %s (msg %s) failed unexpectedly", guide, msg_id)
        await _settle(
            sessions, msg_id, clock, ReplyStatus.FAILED, f"unexpected error: {describe_error(exc)}"
        )
        return "failed"
    await _settle(sessions, msg_id, clock, ReplyStatus.SENT, None)
    return "sent"


async def _settle(
    sessions: Sessions, msg_id: str, clock: Any, status: str, error: str | None
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(BotReply)
            .where(BotReply.msg_id == msg_id)
            .values(status=status, error=error, updated_at=clock.now())
        )
