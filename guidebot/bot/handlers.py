"""The guide chatbot: text messages guides send to the app, answered once.

Two ways an answer goes out, and the `bot_replies` row (keyed by MsgId) decides which:

1. Passive, in the callback's own HTTP response (`passive_reply`, called by the callback
   endpoint after the inbox commit). It claims the row, computes the answer within
   PASSIVE_BUDGET seconds, and when the answer is text it marks the row `passive` and returns
   the encrypted envelope. WeCom retrying the same message (same MsgId) gets the same answer
   again, never a second one. Cards (news), an answer that takes too long, or any error hand
   the row to the outbox instead, and the callback answers an empty 200.
2. By message/send: the worker's handler (`on_text`) claims the row if the callback did not,
   computes the answer and queues it; `replies.flush_replies` sends it within WeCom's
   30-a-minute limit per member.

Whoever inserts the row first owns the answer, so a message is never answered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from functools import partial
from typing import Any

from aiohttp import web
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.bot.models import BotReply, ReplyStatus
from guidebot.bot.replies import (
    Reply,
    active_guide,
    build_reply,
    flush_replies,
    passive_text_xml,
)
from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.db.engine import upsert_insert
from guidebot.events import after_commit
from guidebot.intake.router import Router
from guidebot.web.keys import CLOCK, CRYPTO, SESSIONS, SETTINGS, WECOM
from guidebot.wecom.client import WeComClient
from guidebot.wecom.events import Event, TextMessage

log = logging.getLogger(__name__)

PASSIVE_BUDGET = 1.5  # seconds the callback may spend on a passive answer
BACKGROUND = web.AppKey("bot_background_tasks", set)
_UNTRACKED: set[asyncio.Task[Any]] = set()  # only if setup() was not called

router = Router("bot")


async def _claim(
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
    if not await _claim(session, msg_id, guide.userid, event.content, ReplyStatus.PENDING, now):
        return  # answered passively (or queued) by the callback already
    reply = await build_reply(session, guide.userid, event.content, now=now, settings=settings)
    row = await session.get(BotReply, msg_id)
    row.reply = reply.as_json()
    sessions = async_sessionmaker(session.bind, expire_on_commit=False)
    after_commit(
        session, partial(flush_replies, sessions, wecom, clock, settings, guide=guide.userid)
    )


# ---- the passive path (called from the callback endpoint) ------------------------------------


def setup(app: web.Application) -> None:
    app[BACKGROUND] = set()
    app.on_shutdown.append(_finish_background)


async def _finish_background(app: web.Application) -> None:
    pending = set(app.get(BACKGROUND) or ())
    if pending:
        await asyncio.wait(pending, timeout=10)


def _spawn(app: web.Application, work: Coroutine[Any, Any, Any]) -> None:
    tasks: set[asyncio.Task[Any]] = app.get(BACKGROUND, _UNTRACKED)
    task = asyncio.create_task(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def passive_reply(request: web.Request, event: Event) -> str | None:
    """The encrypted passive-reply envelope for a guide's text message, or None (empty 200).

    Never raises: the callback is already stored, and its acknowledgement must not fail.
    """
    if not isinstance(event, TextMessage):
        return None
    try:
        return await _passive(request, event)
    except Exception:
        log.exception("passive reply to message %s failed; the worker answers it", event.msg_id)
        return None


async def _passive(request: web.Request, event: TextMessage) -> str | None:
    app = request.app
    sessions, clock, settings = app[SESSIONS], app[CLOCK], app[SETTINGS]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PASSIVE_BUDGET
    msg_id, now = str(event.msg_id), clock.now()
    earlier: dict[str, Any] | None = None
    async with sessions() as session, session.begin():
        guide = await active_guide(session, event.from_user)
        if guide is None:
            return None
        userid = guide.userid
        claimed = await _claim(session, msg_id, userid, event.content, ReplyStatus.CLAIMED, now)
        if not claimed:
            row = await session.get(BotReply, msg_id)
            if row is not None and row.status == ReplyStatus.PASSIVE:
                earlier = row.reply
    if not claimed:
        # A retry of a message answered passively gets the same answer; anything else, nothing.
        if earlier is not None:
            log.info("message %s delivered again: repeating its passive answer", msg_id)
            return _envelope(request, event, Reply.from_json(earlier).text)
        return None

    compute = asyncio.ensure_future(_compute(sessions, userid, event.content, clock, settings))
    try:
        reply = await asyncio.wait_for(asyncio.shield(compute), max(0.05, deadline - loop.time()))
    except TimeoutError:
        log.info(
            "message %s: answer not ready in %.1f s; it goes by message/send",
            msg_id,
            PASSIVE_BUDGET,
        )
        _spawn(app, _hand_over(app, msg_id, userid, compute))
        return None
    except Exception:
        log.exception("message %s: computing the answer failed; the outbox retries it", msg_id)
        _spawn(app, _hand_over(app, msg_id, userid, None))
        return None

    if reply.kind == "text":
        if await _move(sessions, clock, msg_id, ReplyStatus.PASSIVE, reply):
            return _envelope(request, event, reply.text)
        return None
    # Cards cannot be a text passive reply: queue them for message/send.
    if await _move(sessions, clock, msg_id, ReplyStatus.PENDING, reply):
        _spawn(app, _flush(app, userid))
    return None


async def _compute(sessions, guide: str, text: str, clock: Clock, settings: Settings) -> Reply:
    async with sessions() as session:
        return await build_reply(session, guide, text, now=clock.now(), settings=settings)


async def _move(sessions, clock: Clock, msg_id: str, status: str, reply: Reply | None) -> bool:
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


async def _hand_over(
    app: web.Application, msg_id: str, guide: str, compute: asyncio.Future[Reply] | None
) -> None:
    reply: Reply | None = None
    if compute is not None:
        with contextlib.suppress(Exception):  # the outbox computes it again if this failed
            reply = await compute
    if await _move(app[SESSIONS], app[CLOCK], msg_id, ReplyStatus.PENDING, reply):
        await _flush(app, guide)


async def _flush(app: web.Application, guide: str) -> None:
    try:
        await flush_replies(app[SESSIONS], app[WECOM], app[CLOCK], app[SETTINGS], guide=guide)
    except Exception:
        log.exception("sending bot replies to %s failed; the periodic flush retries", guide)


def _envelope(request: web.Request, event: TextMessage, text: str) -> str:
    app = request.app
    settings = app[SETTINGS]
    plaintext = passive_text_xml(
        to_user=event.from_user,
        corp_id=settings.corp_id,
        agent_id=settings.agent_id,
        content=text,
        create_time=int(app[CLOCK].time()),
    )
    timestamp = request.query.get("timestamp") or str(int(app[CLOCK].time()))
    nonce = request.query.get("nonce") or "0"
    return app[CRYPTO].encrypt(plaintext, timestamp=timestamp, nonce=nonce).envelope()
