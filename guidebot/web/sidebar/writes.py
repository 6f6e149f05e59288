"""What the sidebar page changes: prepare a message with a fresh tracked link, record the
forward once WeCom says it was sent, mark that the customer wrote back, and close (done, skip)
or put off (snooze) one of the guide's tasks with one tap. Same origin only, by a signed-in
guide, for the guide's own active customers and tasks.

A customer who is no longer the guide's answers 403 `customer_left`, so the page can say so."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from guidebot.contacts import queries
from guidebot.contacts.models import Guide
from guidebot.content import links, service
from guidebot.content.errors import ContentError
from guidebot.content.models import ContentItem, ContentKind, ForwardVia
from guidebot.sop import queries as tasks
from guidebot.sop.enrollment import record_reply
from guidebot.sop.models import CompletedBy
from guidebot.sop.task_marks import (
    SNOOZE_RANGE,
    TaskConflict,
    TaskNotFound,
    complete_task,
    parse_delay,
    skip_task,
    snooze_task,
)
from guidebot.web.api.common import INT32_MAX, INT64_MAX
from guidebot.web.auth import current_guide
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, WECOM
from guidebot.web.responses import error_response, json_object
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

REF_TTL = timedelta(days=1)  # a prepared message is confirmed within seconds; allow a day
LEFT = "客户已不在你的客户列表 · this customer is no longer yours"


def customer_left() -> web.Response:
    return error_response(403, "customer_left", LEFT)


def _same_origin(request: web.Request) -> bool:
    """No Origin at all (browsers send one with every cross-site POST) or our own: the Host the
    request reached, or the public URL's host, which the browser saw if a proxy rewrote Host."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    ours = {request.host.lower(), urlsplit(request.app[SETTINGS].public_url).netloc.lower()}
    return urlsplit(origin).netloc.lower() in ours


def chat_message(item: ContentItem, url: str, media_id: str | None) -> dict[str, Any]:
    """The arguments of ww.sendChatMessage for an item (reference §5)."""
    if item.kind == ContentKind.TEXT:
        return {"msgtype": "text", "text": {"content": item.body or item.title}}
    if item.kind == ContentKind.LINK:
        news = {"link": url, "title": item.title, "desc": item.summary or "", "imgUrl": ""}
        if item.cover_url:
            news["imgUrl"] = item.cover_url
        return {"msgtype": "news", "news": news}
    if item.kind == ContentKind.IMAGE:
        return {"msgtype": "image", "image": {"mediaid": media_id}}
    if item.kind == ContentKind.FILE:
        return {"msgtype": "file", "file": {"mediaid": media_id}}
    return {
        "msgtype": "miniprogram",
        "miniprogram": {
            "appid": item.miniprogram_appid,
            "title": item.title,
            "imgUrl": item.cover_url or "",
            "page": item.miniprogram_page,
        },
    }


def _is_id(value: Any, hi: int) -> bool:
    """A row id: an integer (not a boolean) 1..hi, so nothing beyond its column is queried."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= hi


GuideWrite = Callable[[web.Request, Guide, dict[str, Any]], Awaitable[web.Response]]


def guide_write(handler: GuideWrite) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A write from the sidebar page: same origin only (the session cookie alone is not
    consent), by a signed-in guide, with a JSON object for a body."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.Response:
        if not _same_origin(request):
            return error_response(403, "forbidden", "cross-origin request")
        guide = await current_guide(request)
        if guide is None:
            return error_response(401, "unauthorized", "sign in first")
        body = await json_object(request)
        if body is None:
            return error_response(400, "bad_request", "body must be a JSON object")
        return await handler(request, guide, body)

    return checked


@guide_write
async def prepare(request: web.Request, guide: Guide, body: dict[str, Any]) -> web.Response:
    """The sendChatMessage arguments for an item, with a fresh tracked link and its reference."""
    app = request.app
    item_id, ext, task_id = body.get("item_id"), body.get("external_userid"), body.get("task_id")
    if not _is_id(item_id, INT32_MAX) or not isinstance(ext, str):
        return error_response(400, "bad_request", "item_id and external_userid are required")
    if task_id is not None and not _is_id(task_id, INT64_MAX):
        return error_response(400, "bad_request", "task_id must be a task id")
    now = app[CLOCK].now()
    step = None
    async with app[SESSIONS]() as session:
        if not await queries.is_active_customer(session, guide.userid, ext):
            return customer_left()
        store = await service.guide_store(session, guide.userid, now)
        item = await session.get(ContentItem, item_id)
        allowed = (
            item is not None
            and service.is_live(item, now)
            and (not item.stores or (store is not None and store.code in item.stores))
        )
        if not allowed:
            return error_response(404, "not_found", "no such content for your store")
        if task_id is not None:
            task = await tasks.get_task(session, task_id)
            if task is None or task.guide_userid != guide.userid or task.external_userid != ext:
                return error_response(
                    400, "bad_request", "that task is not yours for this customer"
                )
            step = task.step_id
    try:
        media_id = await service.ensure_media(app[SESSIONS], app[WECOM], item_id, now)
    except (WeComError, ContentError) as exc:
        log.warning("sidebar: media for item %s unavailable: %s", item_id, exc)
        return error_response(502, "wecom_error", "the item's media could not be uploaded to WeCom")
    token, _ = links.mint(
        app[SETTINGS].secret_key,
        item_id=item_id,
        guide=guide.userid,
        customer=ext,
        task_id=task_id,
        step=step,
        now=now,
    )
    url = links.link_url(app[SETTINGS].public_url, token)
    return web.json_response(
        {"message": chat_message(item, url, media_id), "ref": token, "url": url}
    )


def prepared_claims(
    app: web.Application, body: dict[str, Any], guide: Guide, *, into_group: bool
) -> links.LinkClaims | web.Response:
    """The claims of the reference the page sends back after sendChatMessage:ok: one this
    server prepared, for this guide, not long ago, and for a group or for one customer as
    `into_group` says; else the refusal to answer with."""
    ref = body.get("ref")
    claims = links.verify(app[SETTINGS].secret_key, ref) if isinstance(ref, str) else None
    addressed = claims is not None and (
        claims.chat_id is not None if into_group else claims.customer is not None
    )
    if claims is None or not addressed:
        return error_response(
            400, "bad_request", "不是本系统准备的消息 · not a reference this server prepared"
        )
    if claims.guide != guide.userid:
        return error_response(403, "forbidden", "这是为其他导购准备的 · prepared for another guide")
    if app[CLOCK].now() - claims.issued_at > REF_TTL:
        return error_response(
            400,
            "bad_request",
            "消息准备得太久了，请重新发送 · this message was prepared too long ago",
        )
    return claims


@guide_write
async def record_forward(request: web.Request, guide: Guide, body: dict[str, Any]) -> web.Response:
    """The page saw sendChatMessage:ok: log the forward once and complete its task."""
    app = request.app
    claims = prepared_claims(app, body, guide, into_group=False)
    if isinstance(claims, web.Response):
        return claims
    now = app[CLOCK].now()
    completed = False
    async with app[SESSIONS]() as session, session.begin():
        created = await service.record_forward(
            session,
            ref=f"l:{claims.nonce}",
            item_id=claims.item_id,
            guide=guide.userid,
            customer=claims.customer,
            via=ForwardVia.SIDEBAR,
            sent_at=now,
            now=now,
            task_id=claims.task_id,
        )
        if created and claims.task_id:
            completed = await tasks.forward_completed_task(session, claims.task_id, guide.userid)
    return web.json_response(
        {"recorded": created, "task_completed": completed}, status=201 if created else 200
    )


@guide_write
async def mark_replied(request: web.Request, guide: Guide, body: dict[str, Any]) -> web.Response:
    """The guide says the customer wrote back: playbooks waiting for a reply stop or score."""
    app = request.app
    ext = body.get("external_userid")
    if not isinstance(ext, str) or not ext:
        return error_response(400, "bad_request", "external_userid is required")
    now = app[CLOCK].now()
    async with app[SESSIONS]() as session, session.begin():
        if not await queries.is_active_customer(session, guide.userid, ext):
            return customer_left()
        stopped, credited = await record_reply(
            session,
            external_userid=ext,
            guide_userid=guide.userid,
            at=now,
            now=now,
            source="sidebar",
        )
    log.info("sidebar: %s marked a reply; %d enrollment(s) stopped", guide.userid, len(stopped))
    return web.json_response({"stopped": len(stopped), "goals_met": credited})


TASK_CHANGES = ("done", "skip", "snooze")


@guide_write
async def change_task(request: web.Request, guide: Guide, body: dict[str, Any]) -> web.Response:
    """One tap on a task: done, skip (with a reason) or snooze (by `delay`, 2h unless said)."""
    change = request.match_info["change"]
    task_id = body.get("task_id")
    if change not in TASK_CHANGES or not _is_id(task_id, INT64_MAX):
        return error_response(400, "bad_request", "task_id and done, skip or snooze are required")
    actor = {"by": CompletedBy.SIDEBAR, "guide_userid": guide.userid, "who": guide.userid}
    now = request.app[CLOCK].now()
    try:
        async with request.app[SESSIONS]() as session, session.begin():
            view = await tasks.get_task(session, task_id)
            if view is None or view.guide_userid != guide.userid:
                raise TaskNotFound(f"no task {task_id}")
            if not await queries.is_active_customer(session, guide.userid, view.external_userid):
                return customer_left()
            if change == "done":
                task = await complete_task(session, task_id, now=now, **actor)
            elif change == "skip":
                reason = body.get("reason")
                if not isinstance(reason, str) or not reason.strip():
                    return error_response(400, "bad_request", "请写上原因 · a reason is required")
                task = await skip_task(session, task_id, reason.strip()[:500], now, **actor)
            else:
                delay = parse_delay(str(body.get("delay") or "2h"))
                if not SNOOZE_RANGE[0] <= delay <= SNOOZE_RANGE[1]:
                    raise ValueError("a task can be put off by 1 minute to 7 days")
                task = await snooze_task(session, task_id, delay, now, **actor)
            answer = {"id": task.id, "status": task.status, "due_at": task.due_at.isoformat()}
    except TaskNotFound:
        return error_response(404, "not_found", "没有这个任务 · no such task of yours")
    except TaskConflict:
        return error_response(409, "conflict", "任务已处理 · this task is settled already")
    except ValueError as exc:
        return error_response(400, "bad_request", str(exc))
    return web.json_response({"task": answer})
