"""The guide chatbot: text messages guides send to the app, answered once.

Two ways an answer goes out, and the `bot_replies` row (keyed by MsgId) decides which:

1. Passive, in the callback's own HTTP response (guidebot.web.passive_reply, after the inbox
   commit). It claims the row, computes the answer within a time budget, and when the answer
   is text it marks the row `passive` and answers in the envelope. WeCom retrying the same
   message (same MsgId) gets the same answer again, never a second one. Cards (news), an
   answer that takes too long, or any error hand the row to the outbox instead, and the
   callback answers an empty 200.
2. By message/send: the worker's handler (`on_text`) claims the row if the callback did not,
   computes the answer and queues it; `replies.flush_replies` sends it within WeCom's
   30-a-minute limit per member.

Whoever inserts the row first owns the answer, so a message is never answered twice.
"""

from __future__ import annotations

import logging
from functools import partial

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.bot.models import BotReply, ReplyStatus
from guidebot.bot.replies import Reply, active_guide, build_reply, flush_replies
from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.db.engine import upsert_insert
from guidebot.events import after_commit
from guidebot.intake.router import Router
from guidebot.wecom.client import WeComClient
from guidebot.wecom.events import TextMessage

log = logging.getLogger(__name__)

router = Router("bot")


async def claim_reply(
    session: AsyncSession, msg_id: str, guide: str, text: str, status: str, now
) -> bool:
    insert = upsert_insert(session.bind.dialect.name)
    result = await session.execute(
        insert(BotReply)
        .values(
            msg_id=msg_id,
            guide_userid=guide,
            request=text[:2000],
            status=status,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["msg_id"])
    )
    return result.rowcount == 1


@router.on(TextMessage)
async def on_text(
    event: TextMessage,
    session: AsyncSession,
    clock: Clock,
    settings: Settings,
    wecom: WeComClient,
) -> None:
    guide = await active_guide(session, event.from_user)
    if guide is None:
        return  # a member who is not a guide: nothing to answer
    now = clock.now()
    msg_id = str(event.msg_id)
    if not await claim_reply(
        session, msg_id, guide.userid, event.content, ReplyStatus.PENDING, now
    ):
        return  # answered passively (or queued) by the callback already
    reply = await build_reply(session, guide.userid, event.content, now=now, settings=settings)
    row = await session.get(BotReply, msg_id)
    row.reply = reply.as_json()
    sessions = async_sessionmaker(session.bind, expire_on_commit=False)
    after_commit(
        session, partial(flush_replies, sessions, wecom, clock, settings, guide=guide.userid)
    )


async def compute_reply(sessions, guide: str, text: str, clock: Clock, settings: Settings) -> Reply:
    # Committed: 完成 / 跳过 / 稍后 change a task. Should the answer then go by message/send
    # instead, computing it again changes nothing more (done and skip are idempotent).
    async with sessions() as session, session.begin():
        return await build_reply(session, guide, text, now=clock.now(), settings=settings)


async def move_reply(sessions, clock: Clock, msg_id: str, status: str, reply: Reply | None) -> bool:
    """CLAIMED -> `status` (with the answer); False when someone else moved it first."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(BotReply)
            .where(BotReply.msg_id == msg_id, BotReply.status == ReplyStatus.CLAIMED)
            .values(
                status=status,
                reply=reply.as_json() if reply is not None else None,
                updated_at=clock.now(),
            )
        )
        return result.rowcount == 1
