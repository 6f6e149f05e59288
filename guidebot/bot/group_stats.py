"""The group line of the bot's 业绩: the guide's customer groups this month, counted as the
group KPIs count them (guidebot.metrics.kpis: the same rows, read through guidebot.groups'
queries) — groups owned, customers who joined and left the groups the guide owned, the net, 入群率
(the guide's active customers in at least one live group) — and the unique opens whose visitor
came by a link the guide forwarded into a group."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot import i18n
from guidebot.contacts.models import Relation, RelationStatus
from guidebot.content.models import ContentOpenVisitor
from guidebot.groups.models import MemberEventKind
from guidebot.groups.queries import guide_group_counts, owner_member_facts
from guidebot.i18n import NP_

WORDS = {
    # The words are the group KPIs' display names (群数, 新入群, 退群, 群净增, 入群率, 群链接打开).
    "groups": NP_(
        "bot",
        "Groups this month: groups {owned} | new members {joined} | left {left} | "
        "net {net} | join rate {rate} | opens via group links {opens}",
    ),
}
TEXT = i18n.in_languages(WORDS)


async def group_line(
    session: AsyncSession, guide: str, since: datetime, until: datetime, lang: str
) -> str | None:
    """The line, or None for a guide with no group and none of whose customers is in one."""
    owned, in_group = (await guide_group_counts(session, [guide]))[guide]
    facts = await owner_member_facts(session, guide, since, until)
    joined = sum(1 for _, kind in facts if kind == MemberEventKind.JOINED)
    left = len(facts) - joined
    if not (owned or in_group or facts):
        return None
    active = await session.scalar(
        select(func.count()).where(
            Relation.guide_userid == guide, Relation.status == RelationStatus.ACTIVE
        )
    )
    opens = await session.scalar(
        select(func.count()).where(
            ContentOpenVisitor.guide_userid == guide,
            ContentOpenVisitor.chat_id.is_not(None),
            ContentOpenVisitor.first_opened_at >= since,
            ContentOpenVisitor.first_opened_at < until,
        )
    )
    rate = f"{in_group / active * 100:.0f}%" if active else "-"
    return TEXT[lang]["groups"].format(
        owned=owned, joined=joined, left=left, net=joined - left, rate=rate, opens=opens or 0
    )
