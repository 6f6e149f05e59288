"""The bot's passive answer: a guide's text message answered in the callback's own response.

`passive_reply` is called by the callback endpoint after the inbox commit (guidebot.bot.handlers
says how the `bot_replies` row decides between this and message/send). It claims the row,
computes the answer within PASSIVE_BUDGET seconds, and when the answer is text marks the row
`passive` and returns the encrypted envelope. Anything else is handed to the outbox in the
background, and the callback answers an empty 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from guidebot.bot.handlers import claim_reply, compute_reply, move_reply
from guidebot.bot.models import BotReply, ReplyStatus
from guidebot.bot.replies import Reply, active_guide, flush_replies, passive_text_xml
from guidebot.web.keys import CLOCK, CRYPTO, SESSIONS, SETTINGS, WECOM
from guidebot.wecom.events import Event, TextMessage

log = logging.getLogger(__name__)

PASSIVE_BUDGET = 1.5  # seconds the callback may spend on a passive answer
BACKGROUND = web.AppKey("bot_background_tasks", set)
_UNTRACKED: set[asyncio.Task[Any]] = set()  # only if setup() was not called


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
    # Real time, not the clock's: WeCom waits 5 s of real time for the callback's answer.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PASSIVE_BUDGET
    msg_id, now = str(event.msg_id), clock.now()
    earlier: dict[str, Any] | None = None
    async with sessions() as session, session.begin():
        guide = await active_guide(session, event.from_user)
        if guide is None:
            return None
        userid = guide.userid
        claimed = await claim_reply(
            session, msg_id, userid, event.content, ReplyStatus.CLAIMED, now
        )
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

    compute = asyncio.ensure_future(compute_reply(sessions, userid, event.content, clock, settings))
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
        if await move_reply(sessions, clock, msg_id, ReplyStatus.PASSIVE, reply):
            return _envelope(request, event, reply.text)
        return None
    # Cards cannot be a text passive reply: queue them for message/send.
    if await move_reply(sessions, clock, msg_id, ReplyStatus.PENDING, reply):
        _spawn(app, _flush(app, userid))
    return None


async def _hand_over(
    app: web.Application, msg_id: str, guide: str, compute: asyncio.Future[Reply] | None
) -> None:
    reply: Reply | None = None
    if compute is not None:
        with contextlib.suppress(Exception):  # the outbox computes it again if this failed
            reply = await compute
    if await move_reply(app[SESSIONS], app[CLOCK], msg_id, ReplyStatus.PENDING, reply):
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
